"""Where the console's bearer token comes from, and where ``trapsctl login`` keeps it.

Server, highest first: ``--server`` > ``TRAPSCTL_SERVER`` > the context (``--context``,
``TRAPSCTL_CONTEXT`` or the current one). Token: ``TRAPSCTL_TOKEN`` > the OS keyring > the
``--insecure-storage`` file. A stored token is only ever sent to the server it was issued by.
The keyring module is imported only when a stored token is needed (it costs ~0.3 s).
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trapsapi.errors import AuthError, ConfigError, TrapsError
from trapsctl.config import (
    FILE_STORAGE,
    ConsoleConfig,
    Context,
    config_dir,
    env_settings,
    normalise_server,
    write_private_file,
)

KEYRING_SERVICE = "trapsctl"
NOT_LOGGED_IN = "not logged in: run trapsctl login (or set TRAPSCTL_SERVER and TRAPSCTL_TOKEN)"


class CredentialStoreError(TrapsError):
    """The token could not be kept where it was asked to go."""


@dataclasses.dataclass(frozen=True)
class Credential:
    server: str
    token: str = dataclasses.field(repr=False)
    source: str
    """``TRAPSCTL_TOKEN``, ``keyring`` or the path of the insecure file."""
    context: Context | None = None


# --- the OS keyring --------------------------------------------------------------------------


def keyring_problem() -> str | None:
    """Why the active keyring backend cannot keep a secret, or None when it can."""
    try:
        import keyring
        from keyring.backends import chainer, fail, null

        backend: Any = keyring.get_keyring()
    except Exception as exc:
        return f"the keyring cannot be loaded ({type(exc).__name__}: {exc})"
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if isinstance(backend, fail.Keyring | null.Keyring):
        return f"no usable OS keyring (active backend: {name})"
    if isinstance(backend, chainer.ChainerBackend) and not backend.backends:
        return "no usable OS keyring (no backend available)"
    if type(backend).__module__.startswith("keyrings.alt"):
        return f"the active keyring backend {name} does not encrypt secrets"
    return None


def keyring_save(key: str, token: str) -> None:
    import keyring

    try:
        keyring.set_password(KEYRING_SERVICE, key, token)
    except Exception as exc:
        raise CredentialStoreError(
            f"cannot store the token in the OS keyring ({type(exc).__name__}: {exc}); "
            "use --insecure-storage to keep it in a 0600 file instead"
        ) from None


def keyring_load(key: str) -> str | None:
    """The stored token, or None when there is none; a keyring failure is a CredentialStoreError."""
    try:
        import keyring

        token: str | None = keyring.get_password(KEYRING_SERVICE, key)
    except Exception as exc:
        raise CredentialStoreError(
            f"cannot read the token from the OS keyring ({type(exc).__name__}: {exc})"
        ) from None
    return token or None


def keyring_delete(key: str) -> bool:
    try:
        import keyring

        if keyring.get_password(KEYRING_SERVICE, key) is None:
            return False
        keyring.delete_password(KEYRING_SERVICE, key)
    except Exception:
        return False
    return True


# --- the --insecure-storage file --------------------------------------------------------------


class InsecureTokenFile:
    """Tokens in a 0600 JSON file, for hosts without a usable keyring (``--insecure-storage``)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "credentials.json"

    def _read(self) -> dict[str, str]:
        try:
            mode = self.path.stat().st_mode
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read ({exc.strerror})") from None
        if stat.S_IMODE(mode) & 0o077:
            sys.stderr.write(
                f"warning: {self.path} is readable by other users; run chmod 600 on it\n"
            )
        try:
            tokens = json.loads(text).get("tokens", {})
        except (ValueError, AttributeError):
            raise ConfigError(f"{self.path}: not a trapsctl credentials file") from None
        if not isinstance(tokens, dict):
            raise ConfigError(f"{self.path}: not a trapsctl credentials file")
        return {str(k): str(v) for k, v in tokens.items()}

    def _write(self, tokens: dict[str, str]) -> None:
        if not tokens:
            self.path.unlink(missing_ok=True)
            return
        write_private_file(self.path, json.dumps({"tokens": tokens}, indent=2) + "\n")

    def load(self, key: str) -> str | None:
        return self._read().get(key)

    def save(self, key: str, token: str) -> None:
        tokens = self._read()
        tokens[key] = token
        self._write(tokens)

    def delete(self, key: str) -> bool:
        tokens = self._read()
        if tokens.pop(key, None) is None:
            return False
        self._write(tokens)
        return True


# --- storing and finding a context's token ----------------------------------------------------


def store_token(context: Context, token: str, token_file: InsecureTokenFile) -> str:
    """Keep ``token`` where ``context.token_storage`` says, remove any other copy; say where."""
    if context.token_storage == FILE_STORAGE:
        token_file.save(context.credential_key, token)
        keyring_delete(context.credential_key)
        return str(token_file.path)
    keyring_save(context.credential_key, token)
    token_file.delete(context.credential_key)
    return "keyring"


def stored_token(context: Context, token_file: InsecureTokenFile) -> tuple[str, str] | None:
    """(token, where) for a context: keyring first, then the insecure file.

    A keyring that fails does not stop the search; it is reported only if no token is found.
    """
    keyring_failure: CredentialStoreError | None = None
    if context.token_storage != FILE_STORAGE:
        try:
            token = keyring_load(context.credential_key)
        except CredentialStoreError as exc:
            token, keyring_failure = None, exc
        if token:
            return token, "keyring"
    token = token_file.load(context.credential_key)
    if token:
        return token, str(token_file.path)
    if keyring_failure is not None:
        raise keyring_failure
    return None


def forget_token(context: Context, token_file: InsecureTokenFile) -> bool:
    """Delete a context's token from both stores; True if there was one."""
    in_file = token_file.delete(context.credential_key)
    in_keyring = context.token_storage != FILE_STORAGE and keyring_delete(context.credential_key)
    return in_file or in_keyring


def resolve_credential(
    config: ConsoleConfig,
    server: str | None = None,
    context_name: str | None = None,
    environ: Mapping[str, str] | None = None,
    token_file: InsecureTokenFile | None = None,
) -> Credential:
    """Find the server and token to use, or raise AuthError (exit 4) when there is none."""
    env = os.environ if environ is None else environ
    env_token = env_settings(env).token
    if server:
        server = normalise_server(server)
        context = config.context_for_server(server, context_name)
    else:
        context = config.context(context_name)
        if context is None:
            raise AuthError(NOT_LOGGED_IN)
        server = context.server
    if env_token:
        return Credential(server, env_token, "TRAPSCTL_TOKEN", context)
    if context is None:
        raise AuthError(f"not logged in to {server}: run trapsctl login --server {server}")
    found = stored_token(context, token_file or InsecureTokenFile())
    if found is None:
        raise AuthError(f"not logged in (context {context.name!r}): run trapsctl login")
    token, source = found
    return Credential(server, token, source, context)

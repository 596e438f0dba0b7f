"""trapsctl's own files: the contexts in config.toml, and the settings read from the environment.

``$XDG_CONFIG_HOME/trapsctl/config.toml`` keeps, per named context, the server URL, the user
name and where the token is stored; never the token itself::

    current_context = "prod"

    [contexts.prod]
    server = "https://esm.example.org:2125"
    username = "alice"
    token_storage = "keyring"
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path

from trapsapi.errors import ConfigError, UsageError

ENV_PREFIX = "TRAPSCTL_"
KEYRING_STORAGE = "keyring"
FILE_STORAGE = "file"


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/trapsctl`` (default ``~/.config/trapsctl``)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "trapsctl"


def config_file(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / "config.toml"


@dataclasses.dataclass
class EnvSettings:
    """Settings only the environment gives (the flags have their own env variables)."""

    token: str | None = None
    """TRAPSCTL_TOKEN: a bearer token for scripts; wins over any stored credential."""
    timeout: float = 30.0
    """TRAPSCTL_TIMEOUT: seconds to wait for the ESM to answer."""
    ca_file: Path | None = None
    """TRAPSCTL_CA_FILE: CA bundle to verify an https ESM with (default: the system's)."""


def env_settings(environ: Mapping[str, str] | None = None) -> EnvSettings:
    from trapsapi.settings import load_settings  # imported when needed: --help stays fast

    return load_settings(EnvSettings, ENV_PREFIX, environ=environ)


def normalise_server(url: str) -> str:
    """Validate a server URL and drop a trailing slash, so equal servers compare equal."""
    from trapsapi.http import parse_server_url

    parse_server_url(url)
    return url.strip().rstrip("/")


@dataclasses.dataclass
class Context:
    """One ESM the console can talk to, under a name of the user's choosing."""

    name: str
    server: str
    username: str
    token_storage: str = KEYRING_STORAGE
    ca_file: str | None = None

    @property
    def credential_key(self) -> str:
        """The key of this context's token in the keyring and in the insecure file."""
        return f"{self.name}:{self.username}@{self.server}"


@dataclasses.dataclass
class ConsoleConfig:
    current_context: str | None = None
    contexts: dict[str, Context] = dataclasses.field(default_factory=dict)

    def context(self, name: str | None = None) -> Context | None:
        """The named context (a usage error if unknown), else the current one (or None)."""
        if name is None:
            return self.contexts.get(self.current_context or "")
        if name not in self.contexts:
            known = ", ".join(sorted(self.contexts)) or "none"
            raise UsageError(f"unknown context {name!r} (known: {known})")
        return self.contexts[name]

    def context_for_server(self, server: str, preferred: str | None = None) -> Context | None:
        """A context for ``server``: the preferred (or current) one if it matches, else any."""
        for name in (preferred, self.current_context):
            found = self.contexts.get(name or "")
            if found is not None and found.server == server:
                return found
        matches = [c for _, c in sorted(self.contexts.items()) if c.server == server]
        return matches[0] if matches else None


def _context_from_toml(path: Path, name: str, values: object) -> Context:
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: [contexts.{name}] must be a table")
    try:
        context = Context(name=name, **values)
    except TypeError:
        fields = ", ".join(f.name for f in dataclasses.fields(Context) if f.name != "name")
        raise ConfigError(f"{path}: [contexts.{name}] expects the keys {fields}") from None
    for field in ("server", "username", "token_storage"):
        if not isinstance(getattr(context, field), str):
            raise ConfigError(f"{path}: contexts.{name}.{field} must be a string")
    if context.token_storage not in (KEYRING_STORAGE, FILE_STORAGE):
        raise ConfigError(f"{path}: contexts.{name}.token_storage must be keyring or file")
    return context


def load_config(path: Path | None = None) -> ConsoleConfig:
    """Read config.toml; a missing file is an empty configuration."""
    from trapsapi.settings import read_toml

    path = path or config_file()
    raw = read_toml(path)
    current = raw.get("current_context")
    contexts = raw.get("contexts", {})
    if current is not None and not isinstance(current, str):
        raise ConfigError(f"{path}: current_context must be a string")
    if not isinstance(contexts, dict):
        raise ConfigError(f"{path}: [contexts] must be a table")
    unknown = sorted(set(raw) - {"current_context", "contexts"})
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}")
    return ConsoleConfig(
        current_context=current,
        contexts={name: _context_from_toml(path, name, v) for name, v in contexts.items()},
    )


def _toml_string(value: str) -> str:
    # A JSON string with ASCII escapes is a valid TOML basic string.
    return json.dumps(value, ensure_ascii=True)


def render_config(config: ConsoleConfig) -> str:
    lines = ["# trapsctl contexts; tokens are never stored here (see `trapsctl login --help`)."]
    if config.current_context is not None:
        lines.append(f"current_context = {_toml_string(config.current_context)}")
    for name, context in sorted(config.contexts.items()):
        lines += ["", f"[contexts.{_toml_string(name)}]"]
        for field in dataclasses.fields(Context):
            value = getattr(context, field.name)
            if field.name != "name" and value is not None:
                lines.append(f"{field.name} = {_toml_string(value)}")
    return "\n".join(lines) + "\n"


def write_private_file(path: Path, text: str) -> None:
    """Write ``text`` atomically to a file only the user can read (dir 0700, file 0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_config(config: ConsoleConfig, path: Path | None = None) -> Path:
    path = path or config_file()
    write_private_file(path, render_config(config))
    return path

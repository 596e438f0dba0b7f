"""Checks of ``esmd serve --tls-cert/--tls-key`` before uvicorn sees them: one clear line for a
missing, unreadable, malformed or mismatched file instead of a traceback at start-up."""

from __future__ import annotations

import ssl
from pathlib import Path

from trapsapi.errors import UsageError


def _readable(path: Path, option: str) -> None:
    if not path.exists():
        raise UsageError(f"{option} {path}: no such file")
    if not path.is_file():
        raise UsageError(f"{option} {path}: not a file")
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None


def check_tls_files(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """A server context for the pair (None when neither is given); UsageError otherwise."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise UsageError("--tls-cert and --tls-key go together")
    _readable(cert, "--tls-cert")
    _readable(key, "--tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(exc) or reason == "KEY_VALUES_MISMATCH":
            raise UsageError(f"--tls-key {key} does not belong to --tls-cert {cert}") from None
        raise UsageError(
            f"cannot use --tls-cert {cert} with --tls-key {key}: not a PEM certificate and "
            f"private key ({reason})"
        ) from None
    return context

"""One error hierarchy for every Traps program, each error carrying its exit code.

The exit codes are the documented contract of ``trapsctl`` and ``trapsd`` (see docs/cli.md):
0 ok, 1 error, 2 usage, 3 server unreachable, 4 authentication/authorisation, 5 not found,
130 interrupted.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """The command did what was asked."""
    ERROR = 1
    """Any other failure: bad input rejected by the server, conflict, server error."""
    USAGE = 2
    """The command line itself is wrong (unknown option, bad value)."""
    UNREACHABLE = 3
    """No ESM server answered (connection refused, DNS, TLS, timeout)."""
    AUTH = 4
    """Missing, expired or revoked credential, or a role that may not do this."""
    NOT_FOUND = 5
    """The named object does not exist (or is not visible to this credential)."""
    STOPPED_ON_REQUEST = 64
    """``trapsd run`` after an authorised ``trapsd stop``/``uninstall``: the systemd unit does
    not restart it (``RestartPreventExitStatus=64``); any other exit is restarted."""
    INTERRUPTED = 130
    """Ctrl-C."""


class TrapsError(Exception):
    """A failure with a one-line message meant for the user."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(TrapsError):
    exit_code = ExitCode.USAGE


class ConfigError(TrapsError):
    """A settings file or environment variable holds a value that cannot be used."""

    exit_code = ExitCode.USAGE


class ApiError(TrapsError):
    """The server answered with an error status."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(ApiError):
    exit_code = ExitCode.UNREACHABLE


class AuthError(ApiError):
    exit_code = ExitCode.AUTH


class NotFound(ApiError):
    exit_code = ExitCode.NOT_FOUND


class Conflict(ApiError):
    pass


class RateLimited(ApiError):
    """429/503 with a Retry-After the caller should honour."""

    def __init__(self, message: str, status: int, retry_after: float) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


def error_for_status(status: int, detail: str, retry_after: float | None = None) -> ApiError:
    """Map an HTTP error status to the error class (and so the exit code) it stands for."""
    if status in (401, 403):
        return AuthError(detail, status)
    if status == 404:
        return NotFound(detail, status)
    if status == 409:
        return Conflict(detail, status)
    if status in (429, 503) and retry_after is not None:
        return RateLimited(detail, status, retry_after)
    return ApiError(detail, status)

"""The state of one ``trapsctl`` run: the global options, and the ESM client they lead to."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import typer

from trapsapi.errors import ApiError, AuthError
from trapsctl.output import OutputFormat

if TYPE_CHECKING:
    from trapsapi.admin_client import AdminClient
    from trapsctl.credentials import Credential


@dataclasses.dataclass
class GlobalOptions:
    """What the root options (``trapsctl --server … -o … -v``) said."""

    server: str | None = None
    context: str | None = None
    output: OutputFormat = OutputFormat.TABLE
    verbose: bool = False


def global_options(ctx: typer.Context) -> GlobalOptions:
    found = ctx.find_object(GlobalOptions)
    return found if found is not None else GlobalOptions()


def output_format(ctx: typer.Context, local: OutputFormat | None) -> OutputFormat:
    """The command's own ``-o`` wins over the global one."""
    return local if local is not None else global_options(ctx).output


def resolve(ctx: typer.Context) -> Credential:
    from trapsctl.config import load_config
    from trapsctl.credentials import resolve_credential

    options = global_options(ctx)
    return resolve_credential(load_config(), options.server, options.context)


@contextmanager
def connect(
    ctx: typer.Context, credential: Credential | None = None, timeout: float | None = None
) -> Iterator[AdminClient]:
    """An AdminClient for the resolved server and token; a 401 says how to log in again, and
    with ``-v`` a failed request is named (method, path, server, status, token source).

    ``timeout`` caps TRAPSCTL_TIMEOUT (shell completion must not hang a shell)."""
    from trapsapi.admin_client import AdminClient
    from trapsctl.config import env_settings

    credential = credential or resolve(ctx)
    settings = env_settings()
    context_ca = credential.context.ca_file if credential.context else None
    ca_file = str(settings.ca_file) if settings.ca_file else context_ca
    seconds = min(settings.timeout, timeout) if timeout else settings.timeout
    requests: list[str] = []

    class Client(AdminClient):
        def _call(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
            requests.append(f"{method} {path}")  # for -v: which request failed
            return super()._call(method, path, *args, **kwargs)

    client = Client(credential.server, credential.token, seconds, ca_file)
    try:
        yield client
    except ApiError as exc:
        if global_options(ctx).verbose and requests:
            status = f"HTTP {exc.status}" if exc.status else "no answer"
            sys.stderr.write(
                f"detail: {requests[-1]} at {credential.server}: {status}; "
                f"token from {credential.source}, timeout {seconds:g} s\n"
            )
        if isinstance(exc, AuthError) and exc.status == 401:
            hint = (
                "check TRAPSCTL_TOKEN"
                if credential.source == "TRAPSCTL_TOKEN"
                else "run trapsctl login"
            )
            raise AuthError(f"{exc.message} ({hint})", exc.status) from None
        raise
    finally:
        client.close()

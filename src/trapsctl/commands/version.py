"""``trapsctl version``: this console's version and, when a credential is at hand, the ESM's."""

from __future__ import annotations

import sys
from typing import Any

import typer

from trapsapi import API_VERSION
from trapsapi.errors import AuthError, TrapsError
from trapsctl import __version__
from trapsctl.options import OutputOption
from trapsctl.output import Column, OutputFormat, emit_object
from trapsctl.session import connect, output_format, resolve

VERSION_FIELDS = [
    Column("TRAPSCTL", "trapsctl"),
    Column("API", "api"),
    Column("SERVER", "server"),
    Column("ESMD", "esmd"),
    Column("ESM API", "esm_api"),
]


def show_version(ctx: typer.Context, fmt: OutputFormat) -> None:
    """Never fails for the ESM's sake: not logged in or unreachable is said on stderr."""
    shown: dict[str, Any] = {"trapsctl": __version__, "api": API_VERSION}
    try:
        credential = resolve(ctx)
    except AuthError:
        credential = None  # not logged in: the client's version only
    if credential is not None:
        shown["server"] = credential.server
        try:
            with connect(ctx, credential) as client:
                reply = client.server_version()
            shown.update(esmd=reply.get("esmd"), esm_api=reply.get("api"))
        except TrapsError as exc:
            sys.stderr.write(f"warning: ESM version unknown: {exc.message}\n")
    if fmt is OutputFormat.TABLE:
        line = f"trapsctl {__version__} (API {API_VERSION})"
        if shown.get("esmd"):
            line += f"\nesmd {shown['esmd']} (API {shown['esm_api']}) at {shown['server']}"
        sys.stdout.write(line + "\n")
    else:
        emit_object(shown, VERSION_FIELDS, fmt)


def version(ctx: typer.Context, output: OutputOption = None) -> None:
    """Print the version of trapsctl and of the API it speaks; the ESM's too when logged in."""
    show_version(ctx, output_format(ctx, output))

"""``trapsctl api-tokens``: long-lived tokens for scripts, acting as a user (superusers only).

A script uses one as ``TRAPSCTL_TOKEN`` (never on the command line); it acts with the role
its user has at each request, and a revoked one is refused at its next request.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from trapsctl.durations import parse_duration
from trapsctl.options import LimitOption, NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, OutputFormat, emit_list, emit_object, timestamp
from trapsctl.session import connect, output_format

app = noun_app("API tokens for scripts (superusers): create, list, revoke.")

MIN_LIFETIME_S, MAX_LIFETIME_S = 60, 10 * 365 * 86400


def api_token_state(token: dict[str, Any]) -> str:
    """active, revoked or expired."""
    if token.get("revoked"):
        return "revoked"
    expires = token.get("expires_at")
    if not expires:
        return "active"
    try:
        moment = datetime.fromisoformat(str(expires))
    except ValueError:
        return "active"
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return "expired" if moment <= datetime.now(UTC) else "active"


API_TOKEN_COLUMNS = [
    Column("ID", "id"),
    Column("NAME", "name", wrap=True),
    Column("USER", "username"),
    Column("STATE", "state", get=api_token_state, styled=True),
    Column("EXPIRES", "expires_at", lambda v: timestamp(v) if v else "never"),
    Column("LAST USED", "last_used_at", timestamp),
    Column("CREATED", "created_at", timestamp),
    Column("BY", "created_by"),
]
NEW_API_TOKEN_FIELDS = [
    Column("ID", "id"),
    Column("NAME", "name"),
    Column("USER", "username"),
    Column("EXPIRES", "expires_at", lambda v: timestamp(v) if v else "never"),
    Column("TOKEN", "token"),
]


def _lifetime(value: str) -> int | None:
    if value.strip().lower() == "never":
        return None
    seconds = parse_duration(value)
    if not MIN_LIFETIME_S <= seconds <= MAX_LIFETIME_S:
        raise typer.BadParameter(f"{value!r}: must be between 60 s and 3650 d, or never")
    return seconds


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="What the token is for.")],
    user: Annotated[
        str, typer.Option("--user", metavar="USER", help="The user it acts as (with their role).")
    ],
    expires_in: Annotated[
        str,
        typer.Option(
            "--expires-in",
            metavar="DURATION",
            help="Lifetime: 90d, 12w, 3600 … or never.",
        ),
    ] = "never",
    output: OutputOption = None,
) -> None:
    """Create an API token; the secret is printed this once and never again."""
    lifetime = _lifetime(expires_in)
    with connect(ctx) as client:
        token = client.create_api_token(name, user, lifetime)
    fmt = output_format(ctx, output)
    emit_object(token, NEW_API_TOKEN_FIELDS, fmt)
    if fmt is OutputFormat.TABLE:
        sys.stderr.write(
            "The token is shown only now: give it to the script as TRAPSCTL_TOKEN "
            "(an environment variable or a secret store, never a command-line argument).\n"
        )


@app.command("list")
def list_api_tokens(
    ctx: typer.Context,
    limit: LimitOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List API tokens, newest first (never their secrets)."""
    with connect(ctx) as client:
        page = client.list_api_tokens(limit=limit)
    emit_list(page, API_TOKEN_COLUMNS, output_format(ctx, output), "API tokens")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[
        str, typer.Argument(metavar="ID", help="The token's ID (api-tokens list).")
    ],
) -> None:
    """Revoke an API token: its next request is refused."""
    with connect(ctx) as client:
        client.revoke_api_token(token_id)
    sys.stderr.write(f"API token {token_id} revoked.\n")

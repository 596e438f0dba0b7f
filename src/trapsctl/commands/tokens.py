"""``trapsctl tokens``: enrollment tokens agents use once to enroll (``trapsd enroll``)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from trapsctl.durations import parse_duration
from trapsctl.options import NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, OutputFormat, emit_list, emit_object, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Enrollment tokens: create, list, revoke.")


def token_state(token: dict[str, Any]) -> str:
    """active, revoked, used up or expired."""
    if token.get("revoked"):
        return "revoked"
    if token.get("uses", 0) >= token.get("max_uses", 1):
        return "used up"
    try:
        expires = datetime.fromisoformat(str(token.get("expires_at")))
    except ValueError:
        return "active"
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return "expired" if expires <= datetime.now(UTC) else "active"


def _uses(token: dict[str, Any]) -> str:
    return f"{token.get('uses', 0)}/{token.get('max_uses', '?')}"


TOKEN_COLUMNS = [
    Column("ID", "id"),
    Column("LABEL", "label", wrap=True),
    Column("STATE", "state", get=token_state, styled=True),
    Column("USES", "uses", get=_uses),
    Column("EXPIRES", "expires_at", timestamp),
    Column("CREATED", "created_at", timestamp),
    Column("BY", "created_by"),
]
NEW_TOKEN_FIELDS = [
    Column("ID", "id"),
    Column("LABEL", "label"),
    Column("USES", "uses", get=_uses),
    Column("EXPIRES", "expires_at", timestamp),
    Column("TOKEN", "token"),
]


MIN_LIFETIME_S, MAX_LIFETIME_S = 60, 365 * 86400


def _expires_in(value: str | int) -> int:
    seconds = value if isinstance(value, int) else parse_duration(value)
    if not MIN_LIFETIME_S <= seconds <= MAX_LIFETIME_S:
        raise typer.BadParameter(f"{value!r}: must be between 60 s and 365 d")
    return seconds


@app.command("create")
def create(
    ctx: typer.Context,
    label: Annotated[
        str, typer.Option("--label", metavar="TEXT", help="What the token is for.")
    ] = "",
    expires_in: Annotated[
        int,
        typer.Option(
            "--expires-in",
            parser=_expires_in,
            metavar="DURATION",
            show_default="1d",
            help="Lifetime: seconds (3600) or 90s, 15m, 1h, 7d, 2w (60 s to 365 d).",
        ),
    ] = 86400,
    max_uses: Annotated[
        int,
        typer.Option("--max-uses", metavar="N", min=1, help="How many agents may enroll with it."),
    ] = 1,
    output: OutputOption = None,
) -> None:
    """Create an enrollment token; the secret is printed this once and never again."""
    with connect(ctx) as client:
        token = client.create_token(label=label, expires_in_s=expires_in, max_uses=max_uses)
    fmt = output_format(ctx, output)
    emit_object(token, NEW_TOKEN_FIELDS, fmt)
    if fmt is OutputFormat.TABLE:
        sys.stderr.write("The token is shown only now: give it to trapsd enroll --token-file.\n")


@app.command("list")
def list_tokens(
    ctx: typer.Context,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List enrollment tokens (never their secrets)."""
    with connect(ctx) as client:
        page = client.list_tokens()
    emit_list(page, TOKEN_COLUMNS, output_format(ctx, output), "enrollment tokens")


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(metavar="ID", help="The token's ID (tokens list).")],
) -> None:
    """Revoke an enrollment token: no agent can enroll with it any more."""
    with connect(ctx) as client:
        client.revoke_token(token_id)
    sys.stderr.write(f"Enrollment token {token_id} revoked.\n")

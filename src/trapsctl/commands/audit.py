"""``trapsctl audit list``: who changed what on the ESM (read-only, newest first)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from trapsctl.durations import parse_since
from trapsctl.options import (
    AllOption,
    LimitOption,
    NoHeadersOption,
    OutputOption,
    QuietOption,
    list_page,
    noun_app,
)
from trapsctl.output import Column, emit_list, printable, timestamp
from trapsctl.session import connect, output_format

app = noun_app("The audit log: list.")


def _detail(value: Any) -> str:
    import json

    return printable(json.dumps(value, ensure_ascii=False, sort_keys=True)) if value else "-"


AUDIT_COLUMNS = [
    Column("ID", "id"),
    Column("TIME", "at", timestamp),
    Column("ACTOR", "actor"),
    Column("ACTION", "action"),
    Column("TARGET", "target", wrap=True),
    Column("SOURCE IP", "source_ip"),
    Column("DETAIL", "detail", _detail, wrap=True),
]


@app.command("list")
def list_audit(
    ctx: typer.Context,
    actor: Annotated[
        str | None, typer.Option("--actor", metavar="USER", help="Only what this user did.")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action", metavar="ACTION", help="An action (user.create) or a prefix (user.)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            parser=parse_since,
            metavar="WHEN",
            help="Only records since a duration ago (15m, 1h, 7d) or an ISO 8601 time.",
        ),
    ] = None,
    limit: LimitOption = 100,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
    all_rows: AllOption = False,
) -> None:
    """List audit records, newest first."""
    filters = {"actor": actor, "action": action, "since": since, "limit": limit}
    with connect(ctx) as client:
        page = list_page(client.list_audit, all_rows, **filters)
    emit_list(page, AUDIT_COLUMNS, output_format(ctx, output), "audit records")

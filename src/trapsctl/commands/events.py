"""``trapsctl events``: security events the agents reported (prevented, killed, notified)."""

from __future__ import annotations

from typing import Annotated

import typer

from trapsapi.enums import Severity
from trapsctl.durations import parse_since
from trapsctl.options import LimitOption, OutputOption, noun_app
from trapsctl.output import Column, emit_list, short_hash, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Security events: list.")

EVENT_COLUMNS = [
    Column("TIME", "time", timestamp),
    Column("SEVERITY", "severity", styled=True),
    Column("ACTION", "action", styled=True),
    Column("MODULE", "module"),
    Column("HOSTNAME", "hostname", wrap=True),
    Column("PROCESS", "process_path", wrap=True),
    Column("SHA256", "sha256", short_hash),
    Column("USER", "user"),
]


@app.command("list")
def list_events(
    ctx: typer.Context,
    agent: Annotated[
        str | None, typer.Option("--agent", metavar="ID", help="Only this agent.")
    ] = None,
    severity: Annotated[
        Severity | None,
        typer.Option("--severity", case_sensitive=False, help="Only events at least this severe."),
    ] = None,
    module: Annotated[
        str | None,
        typer.Option(
            "--module", metavar="NAME", help="Only this protection module (e.g. malware)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            parser=parse_since,
            metavar="WHEN",
            help="Only events since a duration ago (15m, 1h, 7d) or an ISO 8601 time.",
        ),
    ] = None,
    limit: LimitOption = 100,
    output: OutputOption = None,
) -> None:
    """List security events, newest first."""
    with connect(ctx) as client:
        page = client.list_events(
            agent_id=agent,
            severity=severity.value if severity else None,
            module=module,
            since=since,
            limit=limit,
        )
    emit_list(page, EVENT_COLUMNS, output_format(ctx, output), "events")

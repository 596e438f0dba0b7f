"""``trapsctl servers``: the communication servers (esmd processes) sharing the database."""

from __future__ import annotations

from typing import Any

import typer

from trapsctl.options import NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, emit_list, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Communication servers: list them, alive or gone.")


def _state(server: dict[str, Any]) -> str:
    return "alive" if server.get("alive") else "gone"


SERVER_COLUMNS = [
    Column("ADDRESS", "address", wrap=True),
    Column("STATE", "alive", get=_state),
    Column("VERSION", "version"),
    Column("AGENTS", "agents_served"),
    Column("REQ/S", "requests_per_s"),
    Column("STARTED", "started_at", timestamp),
    Column("LAST SEEN", "last_seen", timestamp),
    Column("ID", "id"),
]


@app.command("list")
def list_servers(
    ctx: typer.Context,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List every esmd process registered in the database, alive or gone."""
    with connect(ctx) as client:
        page = client.list_servers()
    emit_list(page, SERVER_COLUMNS, output_format(ctx, output), "servers", id_key="id")

"""``trapsctl dashboard``: the interactive console (Textual), imported only when it runs.

This is the one place the scripted CLI reaches the TUI, and it does so inside the function,
so ``import trapsctl.cli`` (every other command, every shell completion) never loads Textual.
"""

from __future__ import annotations

from typing import Annotated

import typer

from trapsctl.session import connect


def dashboard(
    ctx: typer.Context,
    refresh: Annotated[
        float,
        typer.Option(
            "--refresh", min=1.0, metavar="SECONDS", help="Seconds between live refreshes."
        ),
    ] = 5.0,
) -> None:
    """Open the dashboard: agents, events, hashes, policies, actions, servers (keys: ?)."""
    with connect(ctx) as client:
        from trapsctl.tui.app import make_dashboard  # the one lazy edge into Textual

        make_dashboard(client, refresh_interval=refresh).run()

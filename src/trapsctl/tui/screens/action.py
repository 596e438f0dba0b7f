"""One action on a screen of its own: its progress and every agent's state and result."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from trapsctl.tui.action_text import action_text, cancellable, deliveries_text
from trapsctl.tui.client import DashboardClient, Obj
from trapsctl.tui.screens.fetch_screen import FetchScreen


class ActionScreen(FetchScreen):
    """Refreshed with the dashboard until every agent is in a final state."""

    LIVE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_action", "Cancel action"),
    ]

    def __init__(self, action_id: str, hostnames: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.action_id = action_id
        self.hostnames = hostnames or {}
        self.title_text = f"Action {action_id}"

    def load(self, client: DashboardClient) -> Obj:
        return client.get_action(self.action_id)

    def render_data(self, data: Obj) -> Text:
        now = self.dashboard.clock()
        out = action_text(data, self.hostnames, now)
        out.append("\n\nAgents\n", style="bold")
        out.append(deliveries_text(list(data.get("deliveries") or []), now))
        return out

    def still_changing(self, data: Obj) -> bool:
        return not data.get("done")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_action":
            return True if self.data is not None and cancellable(self.data) else None
        return True

    def action_cancel_action(self) -> None:
        if self.data is not None:
            self.dashboard.ask_cancel(self.data)

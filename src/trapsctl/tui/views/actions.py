"""The Actions tab: the action centre's actions, newest first, with per-state progress.

Enter opens an action (every agent's state and result), ``c`` cancels it where agents have
not received it yet (asks first). Actions are created from the Agents tab.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from trapsctl.output import printable
from trapsctl.tui.action_text import LABELS, action_text, cancellable, progress_cell, state_of
from trapsctl.tui.action_text import target_text as action_target
from trapsctl.tui.cells import ago, cell
from trapsctl.tui.client import PAGE_LIMIT, DashboardClient, Obj
from trapsctl.tui.screens.action import ActionScreen
from trapsctl.tui.views.table_view import TableView, paged


class ActionsView(TableView):
    SOURCE = "actions"
    PLACEHOLDER = "/ filter actions: type, target, admin, comment …"
    COLUMNS = [
        ("CREATED", 8),
        ("TYPE", 10),
        ("TARGET", None),
        ("AGENTS", 6),
        ("PROGRESS", 16),
        ("STATE", 9),
        ("BY", None),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel_action", "Cancel action"),
    ]

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        # The server has no free-text filter here: the pages held are filtered locally.
        return client.list_actions(limit=PAGE_LIMIT, **paged(offset))

    def server_filter(self) -> bool:
        return False

    def hostnames(self) -> Mapping[str, str]:
        """Agent IDs to hostnames, from the agents the Agents tab holds."""
        return self.dashboard.hostnames()

    def key_of(self, row: Obj) -> str:
        return str(row["id"])

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        kind = printable(row.get("type"))
        return [
            ago(row.get("created_at"), now),
            cell(LABELS.get(kind, kind)),
            cell(action_target(row.get("target"), self.hostnames())),
            cell(row.get("agents")),
            progress_cell(row.get("progress")),
            state_of(row),
            cell(row.get("created_by")),
        ]

    def haystack(self, row: Obj) -> str:
        parts = [
            row.get("type"),
            action_target(row.get("target"), self.hostnames()),
            row.get("created_by"),
            row.get("comment"),
            state_of(row).plain,
        ]
        return " ".join(str(p) for p in parts if p).lower()

    def detail(self, row: Obj, now: datetime) -> Text:
        out = action_text(row, self.hostnames(), now)
        out.append("\n\nEnter", style="bold")
        out.append(" every agent's state and result")
        if cancellable(row):
            out.append(" · ")
            out.append("c", style="bold")
            out.append(" cancel")
        return out

    def binding_state(self, row: Obj | None) -> tuple[bool, ...]:
        return (row is not None and cancellable(row),)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_action":
            row = self.selected()
            return True if row is not None and cancellable(row) else None
        return super().check_action(action, parameters)

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_action()

    def action_open_action(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.push_screen(ActionScreen(str(row["id"]), self.hostnames()))

    def action_cancel_action(self) -> None:
        row = self.selected()
        if row is not None:
            self.dashboard.ask_cancel(row)

"""The Policies tab: every policy by name (priority, targets, the version that last changed it).

Enter shows a policy's rules, ``h`` its history; the explain for an agent is on the Agents
tab (``x``). The ESM answers every policy in one page (there are few); the version of each
comes from the newest page of the policy history.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.widgets import DataTable

from trapsctl.tui.cells import ago, cell
from trapsctl.tui.client import PAGE_LIMIT, DashboardClient, Obj
from trapsctl.tui.policy_text import flatten, policy_text, targets_text
from trapsctl.tui.screens.policy import HistoryScreen, PolicyScreen
from trapsctl.tui.views.table_view import TableView


class PoliciesView(TableView):
    SOURCE = "policies"
    PLACEHOLDER = "/ filter policies: name, target, rule …"
    COLUMNS = [
        ("NAME", None),
        ("PRIO", 5),
        ("ON", 3),
        ("TARGETS", None),
        ("VER", 4),
        ("UPDATED", 8),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("h", "history", "History"),
    ]

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        page = client.list_policies()
        history = client.policy_history(limit=PAGE_LIMIT)
        versions: dict[str, int] = {}
        for entry in history.get("data") or []:
            for name in str(entry.get("policy") or "").split(","):  # an apply names several
                versions[name] = max(versions.get(name, 0), int(entry.get("version") or 0))
        rows = [{**row, "version": versions.get(str(row.get("name")))} for row in page["data"]]
        return {**page, "data": rows}

    def server_filter(self) -> bool:
        return False

    def key_of(self, row: Obj) -> str:
        return str(row["name"])

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        enabled = bool(row.get("enabled", True))
        version = row.get("version")
        return [
            cell(row.get("name")),
            cell(row.get("priority")),
            Text("✓" if enabled else "✗", style="green" if enabled else "red"),
            cell(targets_text(row.get("targets"))),
            cell(version if version is not None else "-"),
            ago(row.get("updated_at"), now),
        ]

    def haystack(self, row: Obj) -> str:
        parts = [row.get("name"), row.get("description"), targets_text(row.get("targets"))]
        parts.extend(name for name, _ in flatten(row.get("rules") or {}))
        return " ".join(str(p) for p in parts if p).lower()

    def detail(self, row: Obj, now: datetime) -> Text:
        out = policy_text(row, now)
        out.append("\n\nEnter", style="bold")
        out.append(" full screen · ")
        out.append("h", style="bold")
        out.append(" history")
        return out

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_policy()

    def action_open_policy(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.push_screen(PolicyScreen(str(row.get("name")), row.get("version")))

    def action_history(self) -> None:
        row = self.selected()
        self.app.push_screen(HistoryScreen(str(row.get("name")) if row is not None else None))

"""The Agents tab: every endpoint's health and protection, its modules, footprint and IPs.

Space marks agents; the action keys (isolate, scan, …) act on the marked agents, or on the
selected one when none is marked, after a dialog that asks for parameters and confirmation.
A mark keeps its agent's row, so it survives the page being dropped from the table's window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from trapsctl.output import printable
from trapsctl.tui.cells import ago, cell, field_lines, styled, timestamp
from trapsctl.tui.client import PAGE_LIMIT, DashboardClient, Obj
from trapsctl.tui.views.table_view import TableView, paged


def footprint(agent: Obj) -> str:
    fp = agent.get("footprint")
    if not fp:
        return "-"
    rss_mb = (fp.get("rss_bytes") or 0) / 2**20
    disk_mb = (fp.get("disk_bytes") or 0) / 2**20
    return f"{fp.get('cpu_percent', 0):.2f}% CPU · {rss_mb:.1f} MiB RSS · {disk_mb:.1f} MiB disk"


def module_line(module: dict[str, Any]) -> Text:
    ok = bool(module.get("healthy"))
    line = Text("✓ " if ok else "✗ ", style="green" if ok else "red")
    mode = printable(module.get("mode")) if module.get("enabled") else "off"
    line.append(f"{printable(module.get('name')):<13}")
    line.append(f"{mode:<13}", style="dim" if mode == "off" else "")
    line.append(printable(module.get("mechanism")))
    if module.get("detail"):
        line.append(f" ({printable(module.get('detail'))})", style="yellow")
    return line


SHORT_STATUS = {"partially_protected": "partial"}


class AgentsView(TableView):
    SOURCE = "agents"
    PLACEHOLDER = "/ filter agents: hostname, IP, OS, version, status …"
    COLUMNS = [
        ("HOSTNAME", None),
        ("HEALTH", 12),
        ("STATUS", 11),
        ("OS", None),
        ("VERSION", 7),
        ("CHECK-IN", 8),
        ("OUTBOX", 6),
    ]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark"),
        Binding("e", "show_events", "Its events"),
        Binding("x", "explain", "Explain policy"),
        Binding("i", "act('isolate')", "Isolate"),
        Binding("u", "act('unisolate')", "Unisolate", show=False),
        Binding("s", "act('scan')", "Scan"),
        Binding("c", "act('checkin')", "Check in", show=False),
        Binding("l", "act('retrieve_logs')", "Logs", show=False),
        Binding("k", "act('kill_process')", "Kill", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.marked: dict[str, Obj] = {}
        """Marked agents by key, held or not (the page they were on may have been dropped)."""

    def targets(self) -> list[Obj]:
        """The marked agents (in the table's order, then those not held), else the selected."""
        held = [self.rows[key] for key in self.order if key in self.marked]
        if self.marked:
            return held + [row for key, row in self.marked.items() if key not in self.rows]
        row = self.selected()
        return [row] if row is not None else []

    def action_toggle_mark(self) -> None:
        row = self.selected()
        if row is None:
            return
        key = self.key_of(row)
        if self.marked.pop(key, None) is None:
            self.marked[key] = row
        table = self.table
        table.update_cell(key, "HOSTNAME", self.cells(row, self.dashboard.clock())[0])
        if table.cursor_row < table.row_count - 1:
            table.move_cursor(row=table.cursor_row + 1, animate=False)
        self.show_detail()

    def clear_marks(self) -> None:
        if self.marked:
            self.marked.clear()
            self.redraw()

    def action_act(self, kind: str) -> None:
        agents = self.targets()
        if agents:
            self.dashboard.ask_action(kind, agents)

    def action_explain(self) -> None:
        row = self.selected()
        if row is not None:
            self.dashboard.explain(row)

    def action_show_events(self) -> None:
        """The Events tab, filtered on the selected agent's hostname."""
        row = self.selected()
        if row is not None:
            self.dashboard.show_events_of(str(row.get("hostname") or ""))

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        return client.list_agents(limit=PAGE_LIMIT, **paged(offset), hostname=query or None)

    def key_of(self, row: Obj) -> str:
        return str(row["agent_id"])

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        outbox = int(row.get("outbox_depth") or 0)
        name = cell(row.get("hostname"))
        if self.key_of(row) in self.marked:
            name = Text("● ", style="bold yellow", no_wrap=True).append_text(name)
        return [
            name,
            styled(row.get("health")),
            styled(row.get("status"), SHORT_STATUS),
            cell(row.get("os_version") or row.get("os")),
            cell(row.get("agent_version")),
            ago(row.get("last_checkin_at"), now),
            cell(outbox, "yellow" if outbox else "dim"),
        ]

    def haystack(self, row: Obj) -> str:
        parts = [
            row.get("hostname"),
            row.get("agent_id"),
            row.get("os"),
            row.get("os_version"),
            row.get("agent_version"),
            row.get("health"),
            row.get("status"),
            *(row.get("ips") or []),
        ]
        return " ".join(str(p) for p in parts if p).lower()

    def detail(self, row: Obj, now: datetime) -> Text:
        checkin = timestamp(row.get("last_checkin_at"))
        seen = ago(row.get("last_checkin_at"), now)
        out = Text()
        out.append(printable(row.get("hostname")), style="bold")
        out.append("  ")
        out.append(styled(row.get("health")))
        out.append(" · ")
        out.append(styled(row.get("status")))
        out.append("\n")
        dropped = int(row.get("events_dropped") or 0)
        out.append(
            field_lines(
                [
                    ("ID", printable(row.get("agent_id"))),
                    ("IPs", ", ".join(printable(ip) for ip in row.get("ips") or []) or "-"),
                    ("OS", f"{row.get('os', '')} {row.get('os_version', '')}".strip()),
                    ("Version", printable(row.get("agent_version"))),
                    ("Check-in", Text(f"{checkin} ({seen.plain})")),
                    ("Policy", printable(row.get("policy_version"))),
                    ("Footprint", footprint(row)),
                    ("Outbox", f"{row.get('outbox_depth', 0)} queued, {dropped} dropped"),
                ]
            )
        )
        modules = row.get("modules") or []
        out.append("\n\nModules\n", style="bold")
        if not modules:
            out.append("none reported", style="dim")
        for index, module in enumerate(modules):
            if index:
                out.append("\n")
            out.append(module_line(module))
        out.append("\n\n")
        if self.marked:
            out.append(f"{len(self.marked)} marked · ", style="bold yellow")
        out.append("Space", style="bold")
        out.append(" mark · ")
        for key, what in (("x", "explain policy"), ("i", "isolate"), ("u", "unisolate")):
            out.append(key, style="bold")
            out.append(f" {what} · ")
        for key, what in (("s", "scan"), ("c", "check in"), ("l", "logs"), ("k", "kill")):
            out.append(key, style="bold")
            out.append(f" {what}" + (" · " if key != "k" else ""))
        return out

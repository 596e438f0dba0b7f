"""The Events tab: live security events, newest first, with a chart of the last 24 hours."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Sparkline, Static

from trapsctl.output import printable
from trapsctl.tui.cells import ago, cell, field_lines, parse_time, short_hash, styled, timestamp
from trapsctl.tui.client import PAGE_LIMIT, DashboardClient, Obj
from trapsctl.tui.screens.event_detail import EventScreen
from trapsctl.tui.views.table_view import TableView, paged

SHORT_SEVERITY = {"informational": "info"}
BUCKETS = 48
BUCKET = timedelta(minutes=30)


def histogram(events: list[Obj], now: datetime) -> list[float]:
    """Events per 30-minute bucket over the last 24 hours (oldest first)."""
    counts = [0.0] * BUCKETS
    start = now - BUCKETS * BUCKET
    for event in events:
        moment = parse_time(event.get("time"))
        if moment is None or not start <= moment <= now:
            continue
        index = min(int((moment - start) / BUCKET), BUCKETS - 1)
        counts[index] += 1
    return counts


def _process(event: Obj) -> str:
    pid = event.get("pid")
    path = printable(event.get("process_path"))
    return f"{path} (pid {pid})" if pid is not None else path


def _parent(event: Obj) -> str:
    path = event.get("parent_path")
    ppid = event.get("ppid")
    if path is None and ppid is None:
        return "-"
    return f"{printable(path)} (pid {printable(ppid)})"


def _user(event: Obj) -> str:
    user, uid = event.get("user"), event.get("uid")
    if user is None and uid is None:
        return "-"
    return f"{printable(user)} (uid {printable(uid)})" if uid is not None else printable(user)


class EventsView(TableView):
    SOURCE = "events"
    PLACEHOLDER = "/ filter events: host, process, user, hash, severity, module …"
    COLUMNS = [
        ("TIME", 7),
        ("SEVERITY", 8),
        ("ACTION", 9),
        ("HOST", None),
        ("PROCESS", 20),
        ("USER", None),
        ("SHA256", 12),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "set_verdict('malware')", "Block hash"),
        Binding("a", "set_verdict('benign')", "Allow hash"),
        Binding("t", "triage", "Triage"),
    ]
    DEFAULT_CSS = """
    EventsView .chart { height: 1; }
    EventsView .chart Static { width: auto; padding: 0 1; color: $text-muted; }
    EventsView Sparkline { width: 1fr; height: 1; margin-right: 1; }
    """

    def compose_extra(self) -> ComposeResult:
        with Horizontal(classes="chart"):
            yield Static("events · 24 h", id="chart-label")
            yield Sparkline([0.0] * BUCKETS, summary_function=max)

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        # The server has no free-text filter here: the newest page is filtered locally.
        return client.list_events(limit=PAGE_LIMIT, **paged(offset))

    def server_filter(self) -> bool:
        return False

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        """Enter (or a click on the selected row): the event's own screen."""
        event.stop()
        self.action_open_event()

    def action_open_event(self) -> None:
        row = self.selected()
        if row is not None:
            self.app.push_screen(EventScreen(row))

    def action_triage(self) -> None:
        row = self.selected()
        if row is not None:
            self.dashboard.triage(row)

    def replace_row(self, event: Obj) -> None:
        """A triaged event came back: keep the list in step without a refetch."""
        key = self.key_of(event)
        if key in self.rows:
            self.rows[key] = event
            self.show_detail()

    def key_of(self, row: Obj) -> str:
        return str(row["id"])

    def hash_of(self, row: Obj) -> str | None:
        sha = row.get("sha256")
        return str(sha) if sha else None

    def rows_changed(self) -> None:
        now = self.dashboard.clock()
        counts = histogram(list(self.rows.values()), now)
        self.query_one(Sparkline).data = counts
        total = int(sum(counts))
        self.query_one("#chart-label", Static).update(f"events · 24 h: {total}")

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        return [
            ago(row.get("time"), now),
            styled(row.get("severity"), SHORT_SEVERITY),
            styled(row.get("action")),
            cell(row.get("hostname")),
            cell(row.get("process_path")),
            cell(row.get("user")),
            cell(short_hash(row.get("sha256"))),
        ]

    def haystack(self, row: Obj) -> str:
        keys = ("hostname", "process_path", "user", "sha256", "severity", "action", "module")
        parts: list[Any] = [row.get(k) for k in keys]
        parts.append(row.get("cmdline"))
        return " ".join(str(p) for p in parts if p).lower()

    def detail(self, row: Obj, now: datetime) -> Text:
        out = Text()
        out.append(styled(row.get("severity")))
        out.append(" · ")
        out.append(styled(row.get("action")))
        out.append(f" · {printable(row.get('module'))}\n")
        when = f"{timestamp(row.get('time'))} ({ago(row.get('time'), now).plain})"
        out.append(
            field_lines(
                [
                    ("Time", when),
                    ("Host", printable(row.get("hostname"))),
                    ("Process", Text(_process(row))),
                    ("Parent", Text(_parent(row))),
                    ("User", _user(row)),
                    ("Cmdline", Text(printable(row.get("cmdline")) or "-")),
                    ("SHA256", Text(printable(row.get("sha256")), overflow="fold")),
                    ("Action", styled(row.get("action"))),
                    ("Triage", printable(row.get("status") or "new").replace("_", " ")),
                    ("Event", printable(row.get("id"))),
                ]
            )
        )
        verdict = self.dashboard.views["hashes"].rows.get(str(row.get("sha256")))
        if verdict is not None:
            out.append("\nVerdict   ", style="bold")
            out.append(styled(verdict.get("verdict")))
            out.append(f" by {printable(verdict.get('updated_by'))}")
        out.append("\n\nEnter", style="bold")
        out.append(" details and process tree · ")
        out.append("t", style="bold")
        out.append(" triage")
        if row.get("sha256"):
            out.append(" · ")
            out.append("b", style="bold")
            out.append(" block this hash · ")
            out.append("a", style="bold")
            out.append(" allow it")
        return out

"""The Events tab: live security events, newest first, with a chart of the last 24 hours.

The chart counts every event on the server (``event_counts``, hourly buckets), not only the
pages held; it is fetched in its own worker with each refresh of the tab."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Sparkline, Static
from textual.worker import get_current_worker

from trapsapi.errors import ApiError
from trapsctl.output import printable
from trapsctl.tui.cells import ago, cell, field_lines, parse_time, short_hash, styled, timestamp
from trapsctl.tui.client import PAGE_LIMIT, DashboardClient, Obj
from trapsctl.tui.event_filter import split_filter
from trapsctl.tui.messages import Fetched
from trapsctl.tui.screens.event_detail import EventScreen
from trapsctl.tui.views.table_view import TableView, paged

SHORT_SEVERITY = {"informational": "info"}
BUCKETS = 24
BUCKET = timedelta(hours=1)


def histogram(by_time: list[Obj], now: datetime) -> list[float]:
    """The server's hourly counts (``by_time``, buckets with events only) as the 24 hours up
    to ``now``, oldest first, zeros where no event happened."""
    counts = [0.0] * BUCKETS
    start = now.replace(minute=0, second=0, microsecond=0) - (BUCKETS - 1) * BUCKET
    for bucket in by_time:
        moment = parse_time(bucket.get("start"))
        if moment is None:
            continue
        index = int((moment - start) // BUCKET)
        if 0 <= index < BUCKETS:
            counts[index] += float(bucket.get("count") or 0)
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
    PLACEHOLDER = "/ filter events: words, or on the server sev:high host:web status:new …"
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
    counting = False
    """A fetch of the chart's counts is running."""
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
        # key:value words filter on the server; free words filter the rows received.
        params, _ = split_filter(query)
        return client.list_events(limit=PAGE_LIMIT, **paged(offset), **params)

    def server_filter(self) -> bool:
        return True  # fetch() sends only the key:value words

    def refetch_on_filter(self) -> bool:
        """Only when the server's part changes: free words filter the rows held."""
        return split_filter(self.filter_text)[0] != split_filter(self.server_query)[0]

    def matches(self, row: Obj, needle: str) -> bool:
        _, free = split_filter(needle)
        return all(word in self.haystack(row) for word in free.split())

    def reload(self, *, if_idle: bool = False) -> None:
        started = self.fetch_started
        super().reload(if_idle=if_idle)
        if self.fetch_started != started and not self.counting:  # the list is fetched too
            self.counting = True
            self._count(self.dashboard.client)

    @work(thread=True, exclusive=True, group="event-counts")
    def _count(self, client: DashboardClient) -> None:
        worker = get_current_worker()
        try:
            counts = client.event_counts(since="24h", bucket="hour")
        except Exception as exc:  # the list's own fetch reports the ESM's state
            error = exc if isinstance(exc, ApiError) else ApiError(type(exc).__name__)
            if not worker.is_cancelled:
                self.post_message(Fetched("event-counts", error=error))
            return
        if not worker.is_cancelled:
            self.post_message(Fetched("event-counts", data=counts))

    @on(Fetched)
    def _counted(self, message: Fetched) -> None:
        if message.key != "event-counts":
            return
        message.stop()
        self.counting = False
        if message.error is not None or not isinstance(message.data, dict):
            return  # keep the last chart
        counts = histogram(list(message.data.get("by_time") or []), self.dashboard.clock())
        self.query_one(Sparkline).data = counts
        total = int(message.data.get("total") or sum(counts))
        self.query_one("#chart-label", Static).update(f"events · 24 h: {total}")

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

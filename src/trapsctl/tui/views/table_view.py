"""The shape every tab shares: a filter box, a table of the server's rows, a detail pane.

A subclass says how to fetch a page (in a thread worker; at most ``PAGE_LIMIT`` rows), how to
draw a row and its details, and what the filter matches. Refreshes replace the rows but keep
the selected row (by key) selected, so a live list never jumps under the analyst.

Paging: moving the cursor near the end of the rows held loads the next page from the server
(``offset``) and appends it, so 100k events or 10k agents are browsed a page at a time. The
table holds a window of pages (see ``window``): past it, the oldest page is dropped from the
top, and near the top of a window that does not start at the first row the previous page is
loaded again (and the last dropped). While more than the first page is held, the periodic
refresh pauses (the list would otherwise shift under the analyst); ``r`` goes back to the
newest page.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static
from textual.worker import get_current_worker

from trapsapi.errors import ApiError
from trapsctl.tui.client import PAGE_LIMIT
from trapsctl.tui.messages import Appended, Counted, Loaded, LoadFailed
from trapsctl.tui.views.verdict import ask_verdict
from trapsctl.tui.views.window import PageWindow, WindowTable

if TYPE_CHECKING:
    from datetime import datetime

    from textual.timer import Timer

    from trapsctl.tui.app import DashboardApp
    from trapsctl.tui.client import DashboardClient, Obj

    Page = tuple[list[Obj], int, int, int]
    """A fetched page: drawable rows, the server's count, rows skipped, rows received."""


def paged(offset: int) -> dict[str, int]:
    """The ``offset`` filter of a further page (none for the first: same call as before)."""
    return {"offset": offset} if offset else {}


class TableView(Vertical):
    """One tab. Subclasses set the class variables and implement the four hooks."""

    SOURCE: ClassVar[str] = ""
    COLUMNS: ClassVar[list[tuple[str, int | None]]] = []
    """Header and width (None: as wide as the content)."""
    PLACEHOLDER: ClassVar[str] = "/ filter"
    LOOKAHEAD: ClassVar[int] = 20
    """Load the next page when the cursor comes this close to the last row held."""

    DEFAULT_CSS = """
    TableView { height: 1fr; }
    TableView > Input.filter { height: 1; border: none; padding: 0 1; background: $boost; }
    TableView > Input.filter:focus { background: $accent 25%; }
    TableView .body { height: 1fr; layout: vertical; }
    TableView DataTable { height: 1fr; width: 1fr; }
    TableView .detail {
        width: 1fr; height: auto; max-height: 45%; padding: 0 1;
        border-top: solid $primary-lighten-1; overflow-y: auto;
    }
    """
    # The side-by-side layout of wide terminals is in DashboardApp.CSS: DEFAULT_CSS is
    # scoped to the widget, so it cannot see the screen's breakpoint class.

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id or self.SOURCE)
        self.rows: dict[str, Obj] = {}
        self.order: list[str] = []
        self.count = 0
        self.loaded = False
        self.in_flight = False
        self.fetch_started = 0.0
        self.skipped = 0
        self.server_query = ""
        """The filter the server applied to the rows held (see ``server_filter``)."""
        self.loading_more = False
        self.window = PageWindow()
        """The pages held: 1 after a refresh, up to ``WINDOW_PAGES`` as the analyst scrolls."""
        self._debounce: Timer | None = None
        self._binding_state: tuple[bool, ...] = ()

    # --- hooks ------------------------------------------------------------------------------

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        """One page (at most ``PAGE_LIMIT`` rows from ``offset``); ``query`` is the filter
        text when the server holds more rows than one page (see ``server_filter``), else
        empty."""
        raise NotImplementedError

    def key_of(self, row: Obj) -> str:
        raise NotImplementedError

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        raise NotImplementedError

    def detail(self, row: Obj, now: datetime) -> Text:
        raise NotImplementedError

    def haystack(self, row: Obj) -> str:
        """The text the filter looks in (lower case)."""
        raise NotImplementedError

    def hash_of(self, row: Obj) -> str | None:
        """The SHA-256 the block/allow keys act on (views without one return None)."""
        return None

    def compose_extra(self) -> ComposeResult:
        """Widgets between the filter and the table (the events chart)."""
        yield from ()

    # --- layout -----------------------------------------------------------------------------

    @property
    def dashboard(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Input(placeholder=self.PLACEHOLDER, classes="filter")
        yield from self.compose_extra()
        with Horizontal(classes="body"):
            yield WindowTable(cursor_type="row", zebra_stripes=True)
            yield Static(Text("Loading …", style="dim"), classes="detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for header, width in self.COLUMNS:
            table.add_column(header, width=width, key=header)
        self.watch(table, "scroll_y", self._scrolled, init=False)

    def _scrolled(self, scroll_y: float) -> None:
        """Scrolled (wheel, End) near the last row held: the next page; near the first row
        held of a window that does not start at the first row: the previous one."""
        if self.table.shifting:
            return  # rows are being put first or dropped: the table scrolls to follow
        if scroll_y >= self.table.max_scroll_y - self.LOOKAHEAD:
            self.load_more()
        elif scroll_y <= self.LOOKAHEAD:
            self.load_previous()

    @property
    def table(self) -> WindowTable:
        return self.query_one(WindowTable)

    @property
    def filter_text(self) -> str:
        return self.query_one(Input).value.strip().lower()

    def selected(self) -> Obj | None:
        table = self.table
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(key) if key is not None else None

    # --- loading ----------------------------------------------------------------------------

    def reload(self, *, if_idle: bool = False) -> None:
        """Fetch again in a worker; a periodic refresh skips while a fetch is still running
        and while the analyst browses further pages."""
        if if_idle and (self.in_flight or self.browsing):
            return
        self.in_flight = True
        self.fetch_started = time.monotonic()
        self.server_query = self.filter_text if self.server_filter() else ""
        self._fetch(self.dashboard.client, self.server_query)

    def server_filter(self) -> bool:
        """Whether the filter goes to the server: only when one page does not hold every row
        (the local filter then would search a part only), or the rows held are filtered."""
        return bool(self.server_query) or self.count > len(self.rows)

    @work(thread=True, exclusive=True, group="fetch")
    def _fetch(self, client: DashboardClient, query: str) -> None:
        page = self._page(client, query, 0)
        if page is not None:
            rows, count, skipped, received = page
            self.post_message(Loaded(self.SOURCE, rows, count, skipped, received))

    def _page(self, client: DashboardClient, query: str, offset: int) -> Page | None:
        """One page in this worker: (rows, count, skipped, received); None when it failed
        (LoadFailed is posted: the status line says why) or the worker was cancelled."""
        worker = get_current_worker()
        try:
            reply = self.fetch(client, query, offset)
            data = list(reply.get("data") or [])
            rows, skipped = self._usable(data)
            count = int(reply.get("count", offset + len(data)))
            if reply.get("count_capped") and data:  # "more than count": page on until empty
                count = max(count, offset + len(data) + 1)
        except Exception as exc:  # a bad reply must not take the dashboard down
            if not worker.is_cancelled:
                error = (
                    exc
                    if isinstance(exc, ApiError)
                    else ApiError(f"unexpected {type(exc).__name__}: {exc}")
                )
                self.post_message(LoadFailed(self.SOURCE, error))
            return None
        return None if worker.is_cancelled else (rows, count, skipped, len(data))

    @property
    def pages(self) -> int:
        return len(self.window.pages)

    @property
    def browsing(self) -> bool:
        """More than the newest page is held, or not the newest page."""
        return self.pages > 1 or self.window.start > 0

    @property
    def more_on_server(self) -> bool:
        return self.loaded and self.count > self.window.end

    def load_more(self) -> None:
        """The next page after the rows held, in a worker (once at a time)."""
        if self.loading_more or self.in_flight or not self.more_on_server:
            return
        self.loading_more = True
        self._fetch_more(self.dashboard.client, self.server_query, self.window.end)

    def load_previous(self) -> None:
        """The page before the window (when it does not start at the first row)."""
        if self.loading_more or self.in_flight or not self.loaded or not self.window.start:
            return
        self.loading_more = True
        offset = self.window.previous_offset(PAGE_LIMIT)
        self._fetch_more(self.dashboard.client, self.server_query, offset, front=True)

    @work(thread=True, exclusive=True, group="fetch-more")
    def _fetch_more(
        self, client: DashboardClient, query: str, offset: int, *, front: bool = False
    ) -> None:
        page = self._page(client, query, offset)
        if page is not None:
            rows, count, skipped, received = page
            appended = Appended(self.SOURCE, offset, rows, count, skipped, received, front)
            self.post_message(appended)

    @on(Appended)
    def _appended(self, message: Appended) -> None:
        if message.source != self.SOURCE:
            return
        self.loading_more = False
        window = self.window
        expected = window.previous_offset(PAGE_LIMIT) if message.front else window.end
        if message.offset != expected or (message.front and not window.start):
            return  # a refresh replaced the rows meanwhile
        self.count = message.count
        self.skipped += message.skipped
        fresh = {self.key_of(row): row for row in message.rows}
        keys = [key for key in fresh if key not in self.rows]  # held: moved by newer rows
        self.rows.update((key, fresh[key]) for key in keys)
        if message.front:
            dropped = window.push_front(message.offset, keys)
            self.order[:0] = keys
        else:
            dropped = window.push_back(message.received, keys)
            self.order.extend(keys)
        for key in dropped:
            del self.rows[key]
        if dropped:
            self.order = [key for key in self.order if key in self.rows]
        self.rows_changed()
        self._shift_rows(keys, dropped, front=message.front)
        self.post_message(self.counted(self.table.row_count))

    def _shift_rows(self, added: list[str], dropped: list[str], *, front: bool) -> None:
        """Draw the page added (those of its rows the filter shows), remove the one dropped."""
        now = self.dashboard.clock()
        needle = self.filter_text
        shown = [key for key in added if self.matches(self.rows[key], needle)]
        self.table.shift([(key, self.cells(self.rows[key], now)) for key in shown], dropped, front)

    def counted(self, shown: int) -> Counted:
        """The status line's figures."""
        held = len(self.rows)
        return Counted(self.SOURCE, shown, held, self.count, self.skipped, self.window.start)

    def _usable(self, rows: list[Obj]) -> tuple[list[Obj], int]:
        """The rows that can be drawn, once each (by key); and how many could not."""
        now = self.dashboard.clock()
        usable: dict[str, Obj] = {}
        skipped = 0
        for row in rows:
            try:
                key = self.key_of(row)
                self.cells(row, now)
                self.haystack(row)
            except Exception:  # a row the server should not have sent: skip, count
                skipped += 1
                continue
            usable.setdefault(key, row)
        return list(usable.values()), skipped

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.source != self.SOURCE:
            return
        self.in_flight = False
        self.loading_more = False
        self.loaded = True
        received = message.received if message.received >= 0 else len(message.rows)
        self.count = message.count
        self.skipped = message.skipped
        self.rows = {self.key_of(row): row for row in message.rows}
        self.order = list(self.rows)  # newest first, as the server sent them, without repeats
        self.window.reset(received, list(self.order))
        self.rows_changed()
        self.redraw()

    @on(LoadFailed)
    def _failed(self, message: LoadFailed) -> None:
        if message.source == self.SOURCE:
            self.in_flight = False
            self.loading_more = False
            if not self.loaded:
                self.query_one(".detail", Static).update(Text("No data yet.", style="dim"))

    def rows_changed(self) -> None:
        """Called after new rows arrived (before the table is redrawn)."""

    # --- drawing ----------------------------------------------------------------------------

    def visible_keys(self) -> list[str]:
        needle = self.filter_text
        if not needle:
            return self.order
        return [k for k in self.order if self.matches(self.rows[k], needle)]

    def matches(self, row: Obj, needle: str) -> bool:
        return not needle or needle in self.haystack(row)

    def refetch_on_filter(self) -> bool:
        """Whether a change of the filter asks the server again (debounced)."""
        return self.server_filter()

    def redraw(self) -> None:
        """Refill the table from ``self.rows``, keeping the selected row selected."""
        table = self.table
        current = self.selected()
        keep = self.key_of(current) if current is not None else None
        now = self.dashboard.clock()
        keys = self.visible_keys()
        table.clear()
        for key in keys:
            table.add_row(*self.cells(self.rows[key], now), key=key)
        if keep is not None and keep in keys:
            table.move_cursor(row=keys.index(keep), animate=False)
        self.show_detail()
        self.post_message(self.counted(len(keys)))

    def show_detail(self) -> None:
        panes = self.query(".detail").results(Static)
        pane = next(panes, None)
        if pane is None:
            return  # the app is shutting down: a late worker message, nothing to draw
        row = self.selected()
        if row is None:
            empty = "No match for the filter." if self.rows else "Nothing here yet."
            pane.update(Text(empty, style="dim"))
        else:
            pane.update(self.detail(row, self.dashboard.clock()))
        state = self.binding_state(row)
        if state != self._binding_state:  # redrawing the footer on every move is costly
            self._binding_state = state
            self.refresh_bindings()

    def binding_state(self, row: Obj | None) -> tuple[bool, ...]:
        """What the footer's dimmed keys depend on (see ``check_action``)."""
        return (row is not None, row is not None and bool(self.hash_of(row)))

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.show_detail()
        row = self.table.cursor_row  # now, not when the message was sent (a refill moves it)
        if row >= self.table.row_count - self.LOOKAHEAD:
            self.load_more()
        elif row < self.LOOKAHEAD:
            self.load_previous()

    @on(Input.Changed, ".filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.loaded:
            self.redraw()
        if self.refetch_on_filter():
            if self._debounce is not None:
                self._debounce.stop()
            self._debounce = self.set_timer(0.3, self.reload)

    @on(Input.Submitted, ".filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.table.focus()

    def set_filter(self, text: str) -> None:
        self.query_one(Input).value = text

    def focus_filter(self) -> None:
        self.query_one(Input).focus()

    def focus_table(self) -> None:
        self.table.focus()

    # --- block / allow ----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Block/allow show dimmed in the footer when the selected row has no hash."""
        if action == "set_verdict":
            row = self.selected()
            return True if row is not None and self.hash_of(row) else None
        return True

    def action_set_verdict(self, verdict: str) -> None:
        row = self.selected()
        self.ask_verdict(self.hash_of(row) if row is not None else None, verdict)

    def ask_verdict(self, sha256: str | None, verdict: str) -> None:
        """Ask, then block (malware) or allow (benign) ``sha256`` in a worker."""
        ask_verdict(self, sha256, verdict)

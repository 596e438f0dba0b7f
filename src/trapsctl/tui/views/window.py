"""Which pages of a server's list a table holds: a window of at most ``WINDOW_PAGES`` pages.

Scrolling down past the window loads the next page and drops the oldest one from the top;
scrolling up to the top of a window that does not start at offset 0 loads the previous page
and drops the last one. The table so never holds more than ``WINDOW_PAGES x PAGE_LIMIT`` rows,
and adding a page costs the same after 1,000 rows browsed as after 100,000 (a DataTable
recomputes every row's offset when rows change, so a growing table grows slower).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

WINDOW_PAGES = 4
"""Pages held at most (of ``PAGE_LIMIT`` rows each)."""


@dataclass
class Page:
    """A page held: where it starts on the server, rows received, keys it added (in order)."""

    offset: int
    received: int
    keys: list[str]


@dataclass
class PageWindow:
    """The pages held, top to bottom (the server's order: newest first)."""

    pages: list[Page] = field(default_factory=list)

    def reset(self, received: int, keys: list[str]) -> None:
        """A refresh: the first page only."""
        self.pages = [Page(0, received, keys)]

    @property
    def start(self) -> int:
        """The server offset of the first row held."""
        return self.pages[0].offset if self.pages else 0

    @property
    def end(self) -> int:
        """The server offset after the last row held (where the next page starts)."""
        return self.pages[-1].offset + self.pages[-1].received if self.pages else 0

    def previous_offset(self, limit: int) -> int:
        """Where the page before the window starts."""
        return max(0, self.start - limit)

    def push_back(self, received: int, keys: list[str]) -> list[str]:
        """A page after the window; returns the keys of the page dropped from the top (none
        for an empty page: the end of a list whose count the server capped)."""
        if not received:
            return []
        self.pages.append(Page(self.end, received, keys))
        return self.pages.pop(0).keys if len(self.pages) > WINDOW_PAGES else []

    def push_front(self, offset: int, keys: list[str]) -> list[str]:
        """A page before the window (from ``offset`` up to the window's start); returns the
        keys of the page dropped from the bottom."""
        self.pages.insert(0, Page(offset, self.start - offset, keys))
        return self.pages.pop().keys if len(self.pages) > WINDOW_PAGES else []


class WindowTable(DataTable[Text]):
    """A DataTable that drops many rows, or puts rows first, in one pass.

    ``remove_row`` renumbers every row for each row removed (a page of 500 from 2,000 held:
    a million steps), and ``clear`` + ``add_row`` measures every row again; these methods
    renumber once and measure only the new rows. They use DataTable's row bookkeeping
    (``_row_locations``, ``_data``): tests/trapsctl/tui/test_tui_window.py checks them
    against the table's public view of its rows.
    """

    shifting = False
    """Rows are being shifted (scroll changes are not the analyst's)."""

    def shift(self, rows: list[tuple[str, list[Text]]], dropped: list[str], front: bool) -> None:
        """Put ``rows`` first (``front``) or last, drop the rows of ``dropped``, and keep the
        cursor on its row, on the same line of the screen."""
        cursor, scroll = self.cursor_row, self.scroll_y
        if front:
            self.add_rows_first(rows)
            moved = len(rows)
        else:
            for key, cells in rows:
                self.add_row(*cells, key=key)
            moved = -sum(1 for key in dropped if key in self.rows)
        self.drop_rows(dropped)
        if moved:
            self.shifting = True
            try:
                self.move_cursor(row=cursor + moved, animate=False, scroll=False)
                self.scroll_y = max(0.0, scroll + moved)
            finally:
                self.shifting = False

    def drop_rows(self, keys: Iterable[str]) -> None:
        """Remove the rows of ``keys`` (those present), keeping the others' order."""
        gone = {RowKey(key) for key in keys} & set(self.rows)
        if not gone:
            return
        kept = [row.key for row in self.ordered_rows if row.key not in gone]
        for key in gone:
            del self.rows[key]
            del self._data[key]
            self._new_rows.discard(key)
        self._updated_cells = {cell for cell in self._updated_cells if cell.row_key not in gone}
        self._renumber(kept)

    def add_rows_first(self, rows: list[tuple[str, list[Text]]]) -> None:
        """Put ``rows`` (key, cells) before the rows held, in that order."""
        held = [row.key for row in self.ordered_rows]
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._renumber([RowKey(key) for key, _ in rows] + held)

    def _renumber(self, order: list[RowKey]) -> None:
        locations = type(self._row_locations)  # TwoWayDict (a private module)
        self._row_locations = locations({key: index for index, key in enumerate(order)})
        self._clear_caches()
        self._update_count += 1
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate  # clamped to the rows left
        self.refresh(layout=True)
        self.check_idle()

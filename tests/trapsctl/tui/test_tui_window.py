"""The tables hold a window of pages: scrolling far into 100,000 events never holds more than
``WINDOW_PAGES`` pages, a page costs as much far down as near the top, and going back up loads
the pages dropped. Timings are printed (with -s) and bounded loosely: the machine may be shared.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from rich.text import Text
from test_tui_scale import fleet, status, table
from textual.app import App, ComposeResult
from tui_fixtures import FakeClient, fixture_app, settle, view

from trapsctl.tui.client import PAGE_LIMIT
from trapsctl.tui.views.agents import AgentsView
from trapsctl.tui.views.window import WINDOW_PAGES, WindowTable

pytestmark = pytest.mark.anyio
WINDOW = WINDOW_PAGES * PAGE_LIMIT


def selected_key(app: Any, name: str) -> str | None:
    tv = view(app, name)
    row = tv.selected()
    return tv.key_of(row) if row is not None else None


async def test_scrolling_through_many_pages_keeps_a_window() -> None:
    agents, events = fleet()
    client = FakeClient(agents=agents, events=events)
    app = fixture_app(client)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        events_table = table(app, "events")
        timings: list[float] = []
        for _ in range(16):  # 8,500 rows down: 13 pages dropped from the top
            last = events_table.coordinate_to_cell_key((events_table.row_count - 1, 0))
            start = time.monotonic()
            await pilot.press("ctrl+end")  # the last row held, then the next page
            await settle(pilot)
            timings.append(time.monotonic() - start)
            before = last.row_key.value
            assert events_table.row_count <= WINDOW
            assert selected_key(app, "events") == before  # the cursor stays on its row
        events_view = view(app, "events")
        assert events_view.window.start == 16 * PAGE_LIMIT - WINDOW + PAGE_LIMIT
        assert events_view.order[0] == f"ev-{events_view.window.start:06d}"
        assert len(events_view.rows) == events_table.row_count == WINDOW
        assert "(rows 6501-8500 of 10000 on the server)" in status(app)
        assert "live refresh paused" in status(app)

        for _ in range(3):  # back up: the pages dropped come back, the bottom ones go
            before = events_table.coordinate_to_cell_key((0, 0)).row_key.value
            await pilot.press("ctrl+home")  # the first row held, then the previous page
            await settle(pilot)
            assert selected_key(app, "events") == before
            assert events_table.row_count <= WINDOW
        assert events_view.window.start == 5_000
        assert events_view.order[0] == "ev-005000"
        assert events_view.order[-1] == "ev-006999"  # contiguous, no gap, no repeat
        assert len(set(events_view.order)) == WINDOW

        await pilot.press("r")  # the newest page again, and the live refresh
        await settle(pilot)
        assert events_table.row_count == PAGE_LIMIT
        assert events_view.window.start == 0 and not events_view.browsing

    offsets = [args.get("offset", 0) for name, args in client.calls if name == "list_events"]
    assert max(offsets) == 8_000 and all(o % PAGE_LIMIT == 0 for o in offsets)
    early = statistics.median(timings[3:7])  # the first pages that drop one
    late = statistics.median(timings[-4:])
    print("page times (s): " + " ".join(f"{t:.2f}" for t in timings))
    print(f"median early {early:.2f}s, late {late:.2f}s")
    assert late < 2 * early + 0.5  # loose: the machine is shared; unbounded growth fails


async def test_marks_survive_their_page_being_dropped() -> None:
    agents, _ = fleet()
    app = fixture_app(FakeClient(agents=agents, events=[]))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("space")  # host-00000, on the first page
        agents_view = view(app, "agents")
        assert isinstance(agents_view, AgentsView)
        for _ in range(6):
            await pilot.press("ctrl+end")
            await settle(pilot)
        assert "id-00000" not in agents_view.rows  # its page was dropped
        assert [row["agent_id"] for row in agents_view.targets()] == ["id-00000"]
        for _ in range(6):
            await pilot.press("ctrl+home")
            await settle(pilot)
        assert agents_view.window.start == 0
        first = table(app, "agents").get_row_at(0)[0]
        assert isinstance(first, Text) and first.plain.startswith("● host-00000")


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield WindowTable()


def cells(key: str) -> list[Text]:
    return [Text(key), Text(key.upper())]


async def test_window_table_drops_and_prepends_rows_in_order() -> None:
    app = TableApp()
    async with app.run_test() as pilot:
        t = app.query_one(WindowTable)
        t.add_columns("A", "B")
        for n in range(10):
            t.add_row(*cells(f"r{n}"), key=f"r{n}")
        t.drop_rows(["r0", "r1", "r5", "nope"])
        await pilot.pause()
        keys = [t.coordinate_to_cell_key((i, 0)).row_key.value for i in range(t.row_count)]
        assert keys == ["r2", "r3", "r4", "r6", "r7", "r8", "r9"]
        t.add_rows_first([("p0", cells("p0")), ("p1", cells("p1"))])
        await pilot.pause()
        assert t.row_count == 9
        assert [t.get_row_at(i)[0].plain for i in range(3)] == ["p0", "p1", "r2"]
        assert t.get_row("r9")[1].plain == "R9"
        assert t.virtual_size.height == 9 + 1  # the rows and the header
        t.add_row(*cells("r10"), key="r10")  # appending still works after renumbering
        assert t.get_row_at(t.row_count - 1)[0].plain == "r10"

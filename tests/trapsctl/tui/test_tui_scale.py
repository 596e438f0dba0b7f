"""100,000 events and 10,000 agents on the server: the dashboard fetches pages, never the lot.

The fake client holds the rows and records every call, so the test proves that each request
asks for one page (``limit`` 500, ``offset`` as the analyst scrolls) and that the filter goes to
the server once the rows held are only part of them. Timings are printed (with -s) and bounded
loosely: the machine may be shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from textual.widgets import DataTable, Static
from tui_fixtures import AGENTS, FakeClient, at, event, fixture_app, settle

from trapsctl.tui.app import DashboardApp
from trapsctl.tui.client import PAGE_LIMIT
from trapsctl.tui.views.table_view import TableView

pytestmark = pytest.mark.anyio
EVENTS = 100_000
AGENT_COUNT = 10_000


def fleet() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    agents = [
        {**AGENTS[n % len(AGENTS)], "agent_id": f"id-{n:05d}", "hostname": f"host-{n:05d}"}
        for n in range(AGENT_COUNT)
    ]
    template = event(0, 0, "high")
    events = [
        {**template, "id": f"ev-{n:06d}", "time": at(n / 60), "hostname": f"host-{n % 10_000:05d}"}
        for n in range(EVENTS)
    ]
    return agents, events


def table(app: DashboardApp, name: str) -> DataTable[Any]:
    return app.query_one(f"#{name}-view", TableView).query_one(DataTable)


def status(app: DashboardApp) -> str:
    return str(app.query_one("#status", Static).content)


async def test_only_pages_are_fetched_from_a_large_fleet(
    record_property: Callable[[str, object], None],
) -> None:
    agents, events = fleet()
    client = FakeClient(agents=agents, events=events)
    app = fixture_app(client)
    async with app.run_test(size=(160, 48)) as pilot:
        start = time.monotonic()
        await settle(pilot)
        first = time.monotonic() - start
        assert table(app, "agents").row_count == PAGE_LIMIT
        assert "(newest 500 of 10000 on the server; more on scroll)" in status(app)

        await pilot.press("2")
        await settle(pilot)
        events_table = table(app, "events")
        assert events_table.row_count == PAGE_LIMIT
        start = time.monotonic()
        await pilot.press("ctrl+end")  # the end of what is held: the next page, only
        await settle(pilot)
        next_page = time.monotonic() - start
        assert events_table.row_count == 2 * PAGE_LIMIT
        before = events_table.cursor_row
        start = time.monotonic()
        for _ in range(40):
            await pilot.press("up")
        keys = time.monotonic() - start
        assert events_table.cursor_row == before - 40

        await pilot.press("1", "slash", *"host-0999")  # agents: filtered by the server
        await pilot.pause(0.5)
        await settle(pilot)
        assert table(app, "agents").row_count == 10  # host-09990 … host-09999
        assert client.calls[-1] == ("list_agents", {"limit": 500, "hostname": "host-0999"})

    lists = [args for name, args in client.calls if name in ("list_agents", "list_events")]
    assert all(args["limit"] == PAGE_LIMIT for args in lists)
    assert {args.get("offset", 0) for args in lists} == {0, PAGE_LIMIT}
    # First pages (again on each tab switch), one further page, the filtered agents: a few
    # thousand rows of the 110,000 crossed the wire.
    assert len(lists) <= 10
    record_property("first pages of 10k agents / 100k events (s)", round(first, 3))
    record_property("next page of events (s)", round(next_page, 3))
    record_property("40 cursor moves (s)", round(keys, 3))
    print(f"first pages {first:.2f}s; next page {next_page:.2f}s; 40 keys {keys:.2f}s")
    assert first < 20 and next_page < 10 and keys < 10  # loose: the machine is shared


async def test_a_capped_count_still_pages_to_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ESM stops counting at a cap (``count_capped``); the view pages on until a page
    comes back empty-handed, not only up to the capped count."""
    import tui_fixtures

    monkeypatch.setattr(tui_fixtures, "COUNT_CAP", 600)
    template = event(0, 0, "high")
    events = [{**template, "id": f"ev-{n:05d}", "time": at(n / 60)} for n in range(1_200)]
    app = fixture_app(FakeClient(events=events))
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        events_table = table(app, "events")
        assert events_table.row_count == PAGE_LIMIT
        for _ in range(3):
            await pilot.press("ctrl+end")
            await settle(pilot)
        assert events_table.row_count == 1_200

"""The Events tab's filter: key:value words are sent to the ESM (covering every event, not
only the pages held), free words filter the rows received, bad values never reach the ESM."""

from __future__ import annotations

from typing import Any

import pytest
from tui_fixtures import EVENTS, FakeClient, event, fixture_app, settle

from trapsctl.tui.app import DashboardApp
from trapsctl.tui.event_filter import split_filter
from trapsctl.tui.views.table_view import TableView

pytestmark = pytest.mark.anyio


def test_split_filter_sends_only_values_the_server_takes() -> None:
    assert split_filter("sev:High host:WEB xmrig") == (
        {"severity": "high", "hostname": "web"},
        "xmrig",
    )
    assert split_filter("sev:info status:false_positive since:2h module:exploit") == (
        {
            "severity": "informational",
            "status": "false_positive",
            "since": "2h",
            "module": "exploit",
        },
        "",
    )
    assert split_filter("sev:loud since:yesterday sha:abc user:bob") == (
        {},
        "sev:loud since:yesterday sha:abc user:bob",
    )
    assert split_filter(f"sha:{'3F' * 32}")[0] == {"sha256": "3f" * 32}


def event_calls(client: FakeClient) -> list[dict[str, Any]]:
    return [args for name, args in client.calls if name == "list_events"]


def shown(app: DashboardApp) -> list[str]:
    view = app.query_one("#events-view", TableView)
    return [str(view.rows[str(row.key.value)]["hostname"]) for row in view.table.ordered_rows]


async def test_key_value_words_go_to_the_server_free_words_stay_local() -> None:
    many = [event(100 + n, 2000 + n, "low", hostname=f"old-{n}") for n in range(600)]
    client = FakeClient(events=[*EVENTS, *many])  # more than a page: the server must filter
    app = fixture_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("2", "slash", *"sev:critical")
        await pilot.pause(0.5)
        await settle(pilot)
        assert event_calls(client)[-1] == {"limit": 500, "severity": "critical"}
        assert shown(app) == ["db-01", "build-07"]
        calls = len(event_calls(client))
        await pilot.press("space", *"kworker")  # a free word: no new request
        await pilot.pause(0.5)
        await settle(pilot)
        assert len(event_calls(client)) == calls
        assert shown(app) == ["build-07"]
        await pilot.press("escape")  # cleared: the newest page again, unfiltered
        await pilot.pause(0.5)
        await settle(pilot)
        assert event_calls(client)[-1] == {"limit": 500}
        assert len(shown(app)) == 500


async def test_the_events_of_an_agent_are_filtered_by_the_server() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "e")
        await pilot.pause(0.5)
        await settle(pilot)
        assert event_calls(client)[-1] == {"limit": 500, "hostname": "db-01"}
        assert shown(app) == ["db-01", "db-01"]

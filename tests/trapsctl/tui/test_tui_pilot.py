"""The dashboard driven by a pilot over a fake client: loading, filtering, details, block/allow,
live refresh that keeps the selection, and a slow or dead ESM."""

from __future__ import annotations

import threading

import pytest
from fleet_fixtures import counts_of
from rich.text import Text
from textual.widgets import DataTable, Input, Static
from tui_fixtures import (
    AGENTS,
    EVENTS,
    NOW,
    SHA_MINER,
    FakeClient,
    detail,
    event,
    fixture_app,
    settle,
    view,
)

from trapsapi.errors import AuthError, Unreachable
from trapsctl.tui.app import DashboardApp
from trapsctl.tui.screens.confirm import ConfirmDialog
from trapsctl.tui.screens.help import HelpScreen
from trapsctl.tui.views.events import BUCKETS, histogram

pytestmark = pytest.mark.anyio

SMALL = (80, 24)
LARGE = (160, 48)


def keys(app: DashboardApp, name: str) -> list[str]:
    table = view(app, name).query_one(DataTable)
    return [str(row.key.value) for row in table.ordered_rows]


def status(app: DashboardApp) -> str:
    content = app.query_one("#status", Static).content
    return content.plain if isinstance(content, Text) else str(content)


async def test_agents_load_with_details_of_the_selected_agent() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert keys(app, "agents") == [a["agent_id"] for a in AGENTS]
        assert ("list_agents", {"limit": 500, "hostname": None}) in client.calls
        text = detail(app, "agents")
        assert "web-01" in text and "10.0.0.11, fe80::1" in text
        assert "✓ malware      prevention   fanotify" in text
        assert "0.04% CPU · 23.0 MiB RSS" in text
        assert status(app).startswith("6 shown · 6 on the server")

        await pilot.press("down", "down")
        text = detail(app, "agents")
        assert "db-01" in text and "✗ malware" in text and "psutil-poll (not root)" in text
        assert "17 queued" in text


async def test_filter_as_you_type_then_escape_clears_it() -> None:
    app = fixture_app()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press("d", "b")
        assert [AGENTS[i]["agent_id"] for i in (2,)] == keys(app, "agents")
        assert "1 shown of 6 loaded" in status(app)
        assert "db-01" in detail(app, "agents")
        await pilot.press("backspace", "backspace", *"disconn")
        assert len(keys(app, "agents")) == 2  # build-07 and jump-01
        await pilot.press(*"ected x")
        assert keys(app, "agents") == []
        assert "No match" in detail(app, "agents")
        await pilot.press("enter")
        assert isinstance(app.focused, DataTable)
        await pilot.press("escape")
        assert len(keys(app, "agents")) == 6


async def test_filter_matches_ips_and_the_number_keys_switch_tabs() -> None:
    app = fixture_app()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"fe80")
        assert keys(app, "agents") == [AGENTS[0]["agent_id"]]
        await pilot.press("escape", "2")
        await settle(pilot)
        assert app.active_view().SOURCE == "events"
        await pilot.press("3")
        await settle(pilot)
        assert app.active_view().SOURCE == "hashes"
        await pilot.press("1")
        assert app.active_view().SOURCE == "agents"


async def test_event_details_and_severity_filter() -> None:
    app = fixture_app()
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert len(keys(app, "events")) == len(EVENTS)
        text = detail(app, "events")
        for expected in (
            "/dev/shm/xmrig (pid 4243)",
            "/usr/lib/postgresql/16/bin/postgres (pid 1000)",
            "postgres (uid 26)",
            "/dev/shm/xmrig -o pool.example:3333",
            SHA_MINER,
            "prevented",
        ):
            assert expected in text
        await pilot.press("slash", *"critical")
        assert len(keys(app, "events")) == 2


async def test_agent_supplied_text_is_never_markup_or_escape_codes() -> None:
    app = fixture_app()
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = view(app, "events").query_one(DataTable)
        cell = table.get_row("e0000000-0000-4000-8000-000000000006")[4]
        assert isinstance(cell, Text)
        assert cell.plain == "/tmp/\\x1b[2J[red]x[/red]"


async def test_live_refresh_adds_new_events_and_keeps_the_selection() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "down")
        selected = view(app, "events").selected()
        assert selected is not None and selected["id"] == EVENTS[2]["id"]

        client.events.insert(0, event(99, 0.1, "critical", hostname="new-host"))
        await pilot.press("r")
        await settle(pilot)
        assert keys(app, "events")[0] == "e0000000-0000-4000-8000-000000000099"
        selected = view(app, "events").selected()
        assert selected is not None and selected["id"] == EVENTS[2]["id"]
        assert "11 shown" in status(app)


async def test_the_timer_refreshes_the_current_tab() -> None:
    client = FakeClient()
    app = fixture_app(client, refresh_interval=0.2)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        client.events.insert(0, event(98, 0.1, "high"))
        for _ in range(100):
            await pilot.pause(0.05)
            if "e0000000-0000-4000-8000-000000000098" in keys(app, "events"):
                break
        assert keys(app, "events")[0] == "e0000000-0000-4000-8000-000000000098"
        assert sum(1 for name, _ in client.calls if name == "list_events") >= 2


async def test_block_the_hash_of_an_event_after_confirming() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("b")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmDialog)
        assert not [c for c in client.calls if c[0] == "set_verdict"]

        await pilot.press("b")
        await pilot.press("y")
        await settle(pilot)
        assert ("set_verdict", {"sha256": SHA_MINER, "verdict": "malware"}) in client.calls
        await pilot.press("3")
        await settle(pilot)
        assert keys(app, "hashes")[0] == SHA_MINER


async def test_allow_from_the_hashes_tab_and_events_without_a_hash() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("a")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.click("#yes")
        await settle(pilot)
        assert client.calls[-2:][0] == ("set_verdict", {"sha256": "3f" * 32, "verdict": "benign"})

        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "down")  # the exploit event: no sha256
        await pilot.press("b")
        assert not isinstance(app.screen, ConfirmDialog)


async def test_a_refused_verdict_is_reported_not_raised() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        client.fail = AuthError("role viewer may not do this", 403)
        await pilot.press("b", "y")
        await settle(pilot)
        assert any("Verdict not set" in n.message for n in app._notifications)


async def test_an_unreachable_esm_shows_a_status_line_and_recovers() -> None:
    client = FakeClient()
    client.fail = Unreachable("http://esm:8443: connection refused")
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert status(app).startswith("ESM unreachable — press r to retry")
        assert "connection refused" in status(app)
        assert "No data yet" in detail(app, "agents")
        await pilot.press("2", "r")  # still responsive
        await settle(pilot)
        assert app.active_view().SOURCE == "events"

        client.fail = None
        await pilot.press("r")
        await settle(pilot)
        assert status(app).startswith("10 shown")


async def test_an_expired_token_says_how_to_log_in() -> None:
    client = FakeClient()
    client.fail = AuthError("token expired", 401)
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert status(app) == "Not authorised: token expired (run trapsctl login)"


async def test_a_slow_esm_never_freezes_the_ui() -> None:
    client = FakeClient()
    client.gate = threading.Event()
    app = fixture_app(client, refresh_interval=0.2, slow_after=0.3)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.8)
        assert status(app).startswith("ESM slow — no reply for")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "2", "3", "1")
        assert app.active_view().SOURCE == "agents"
        fetches = sum(1 for name, _ in client.calls if name == "list_agents")
        assert fetches == 1  # the timer does not pile up requests behind a stuck one
        client.gate.set()
        await settle(pilot)
        await pilot.pause(0.1)
        assert len(keys(app, "agents")) == 6


async def test_only_one_page_is_fetched_and_the_status_says_so() -> None:
    many = [{**AGENTS[0], "agent_id": f"id-{n:05d}", "hostname": f"h{n:05d}"} for n in range(600)]
    client = FakeClient(agents=many)
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert len(keys(app, "agents")) == 500
        assert "(newest 500 of 600 on the server; more on scroll)" in status(app)
        assert client.calls[0] == ("list_agents", {"limit": 500, "hostname": None})

        # Only part of the rows are here: the filter also goes to the server (debounced).
        await pilot.press("slash", *"h0059")
        await pilot.pause(0.5)
        await settle(pilot)
        assert client.calls[-1] == ("list_agents", {"limit": 500, "hostname": "h0059"})
        assert keys(app, "agents") == [f"id-{n:05d}" for n in range(590, 600)]
        assert status(app).startswith("10 shown · 10 on the server")
        await pilot.press("escape")
        await pilot.pause(0.5)
        await settle(pilot)
        assert client.calls[-1] == ("list_agents", {"limit": 500, "hostname": None})
        assert len(keys(app, "agents")) == 500


async def test_help_and_quit() -> None:
    app = fixture_app()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("q")
    assert app.return_code == 0


def test_histogram_places_the_servers_hourly_counts_in_the_last_24_hours() -> None:
    by_time = counts_of([*EVENTS, event(50, 60 * 25, "low")])["by_time"]
    counts = histogram(by_time, NOW)
    assert len(counts) == BUCKETS
    assert sum(counts) == len(EVENTS)  # the 25-hour-old one is outside the chart
    assert counts[-1] == 0  # the hour that starts now: nothing yet
    assert counts[-2] == 4  # 2, 7, 15 and 42 minutes ago
    assert counts[1] == 1  # 21h40 ago


async def test_from_an_agent_to_its_events_and_the_verdict_in_event_details() -> None:
    app = fixture_app()
    async with app.run_test(size=LARGE) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "e")  # db-01
        await settle(pilot)
        assert app.active_view().SOURCE == "events"
        assert [view(app, "events").rows[k]["hostname"] for k in keys(app, "events")] == [
            "db-01",
            "db-01",
        ]
        await pilot.press("down")  # the hostile event, sha256 3f… (blocked in the fixtures)
        assert "Verdict   malware by admin" in detail(app, "events")


async def test_malformed_rows_are_skipped_and_counted_not_a_crash() -> None:
    bad_types = {**AGENTS[1], "outbox_depth": "lots"}
    client = FakeClient(agents=[{"hostname": "no-id"}, AGENTS[0], bad_types, AGENTS[0]])
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert keys(app, "agents") == [AGENTS[0]["agent_id"]]  # and a repeated row once
        assert "2 malformed rows skipped" in status(app)
        client.fail = RuntimeError("bug in a client")
        await pilot.press("r")
        await settle(pilot)
        assert status(app).startswith("ESM error: unexpected RuntimeError: bug in a client")

"""The console driven by a pilot over a scripted daemon: header, tabs, details, check in now,
a daemon that is gone, slow, or too old to know a command."""

from __future__ import annotations

import threading

import pytest
from console_fixtures import AGENT_ID, SERVER, ScriptedSource, fixture_console, settle
from rich.text import Text
from textual.widgets import DataTable, Static

from trapsd.console.app import ConsoleApp
from trapsd.console.views import EventDetail
from trapsd.control import DaemonNotRunning

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60, method="thread")]
SMALL = (80, 24)


def text(app: ConsoleApp, selector: str) -> str:
    content = app.screen.query_one(selector, Static).content
    return content.plain if isinstance(content, Text) else str(content)


def cells(app: ConsoleApp, view: str, column: int) -> list[str]:
    table = app.query_one(f"#{view}-view DataTable", DataTable)
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


async def test_header_and_overview_show_the_agent() -> None:
    app = fixture_console()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        header = text(app, "#header")
        assert AGENT_ID in header and SERVER in header and "✓ connected" in header
        assert "2026-11-29 09:58:00Z (2m ago)" in header and "Policy 7" in header
        assert cells(app, "overview", 1) == ["malware", "restrictions", "child_process"]
        assert cells(app, "overview", 0) == ["✓", "✓", "✗"]
        assert "modules 2/3 healthy" in text(app, "#overview-view .note")
        assert not app.query_one("#banner").display


async def test_tabs_switch_by_key_and_events_show_details() -> None:
    source = ScriptedSource()
    app = fixture_console(source)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        assert app.tabs.active == "events"
        assert {"cmd": "events", "limit": 200} in source.calls
        assert cells(app, "events", 1) == ["critical", "high", "medium", "low"]
        assert r"/tmp/\x1b[2J[red]x[/red]" in cells(app, "events", 4)  # escaped, not markup
        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, EventDetail)
        detail = text(app, "#event-detail")
        assert "/usr/bin/bash" in detail and "blocked hash" in detail
        await pilot.press("escape")
        await pilot.press("3")
        await settle(pilot)
        assert cells(app, "processes", 2) == [
            "/usr/sbin/nginx",
            "/usr/lib/postgresql/16/bin/postgres",
        ]
        assert "212 tracked via proc-connector" in text(app, "#processes-view .note")
        await pilot.press("4")
        await settle(pilot)
        assert cells(app, "policy-log", 1) == ["7", "6"]
        await pilot.press("5")
        await settle(pilot)
        assert "Blocked hashes12" in text(app, "#policy-summary")
        assert "esm2.example.org" in text(app, "#agent-settings")


async def test_check_in_now_by_key_and_by_button() -> None:
    source = ScriptedSource()
    app = fixture_console(source)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        result = text(app, "#checkin-result")
        assert f"Checked in to {SERVER}" in result and "policy version 8" in result
        source.replies["checkin"] = {"ok": False, "error": "no ESM answered", "exit_code": 3}
        await pilot.press("5")
        await settle(pilot)
        await pilot.click("#checkin")
        await settle(pilot)
        assert text(app, "#checkin-result") == "✗ Check-in failed: no ESM answered"
        assert source.commands().count("checkin") == 2


async def test_daemon_gone_shows_a_banner_and_recovers() -> None:
    source = ScriptedSource()
    source.fail = DaemonNotRunning("trapsd is not running (no daemon on /x/control.sock)")
    app = fixture_console(source)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert app.query_one("#banner").display
        assert text(app, "#banner").startswith("trapsd is not running")
        assert "daemon not running" in text(app, "#header")
        await pilot.press("c")
        await settle(pilot)
        assert "Check-in failed: trapsd is not running" in text(app, "#checkin-result")
        source.fail = None
        await pilot.press("r")
        await settle(pilot)
        assert not app.query_one("#banner").display
        assert "✓ connected" in text(app, "#header")


async def test_commands_an_older_agent_does_not_know() -> None:
    source = ScriptedSource(unknown={"events", "processes", "policy-log", "policy"})
    app = fixture_console(source)
    async with app.run_test(size=SMALL) as pilot:
        for key, view in (("2", "events"), ("3", "processes"), ("4", "policy-log")):
            await pilot.press(key)
            await settle(pilot)
            assert "not available in this agent version" in text(app, f"#{view}-view .note")
        await pilot.press("5")
        await settle(pilot)
        assert "not available in this agent version" in text(app, "#policy-summary")
        assert AGENT_ID in text(app, "#agent-settings")  # status still works


async def test_a_slow_daemon_never_freezes_the_ui() -> None:
    source = ScriptedSource()
    source.gate = threading.Event()
    app = fixture_console(source, refresh_interval=0.2)
    app.slow_after = 0.3
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause(0.8)
        assert "trapsd is slow" in text(app, "#banner")
        await pilot.press("5")  # keys still work while the request hangs
        assert app.tabs.active == "settings"
        source.gate.set()
        await settle(pilot)
        await pilot.pause(0.3)
        await settle(pilot)
        assert not app.query_one("#banner").display

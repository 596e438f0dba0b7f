"""The dashboard's event workflow over a fake client: the event screen with its process tree,
triage (saved, cancelled, refused), the command palette's commands, and paging on scroll."""

from __future__ import annotations

from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Input, Select, Static
from tui_fixtures import EVENTS, NOW, FakeClient, event, fixture_app, settle

from trapsapi.errors import AuthError
from trapsctl.tui.app import DashboardApp
from trapsctl.tui.screens.confirm import ConfirmDialog
from trapsctl.tui.screens.event_detail import EventScreen
from trapsctl.tui.screens.triage import TriageDialog
from trapsctl.tui.views.table_view import TableView

pytestmark = pytest.mark.anyio
SMALL = (80, 24)


def events_view(app: DashboardApp) -> TableView:
    return app.query_one("#events-view", TableView)


def screen_text(app: DashboardApp) -> str:
    content = app.screen.query_one("#event-text", Static).content
    return content.plain if isinstance(content, Text) else str(content)


async def test_enter_opens_the_event_with_its_process_tree_and_escape_goes_back() -> None:
    app = fixture_app()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2", "down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, EventScreen)
        text = screen_text(app)
        tree = text[text.index("Process tree") :].splitlines()[1:]
        assert [line.split()[-2:] for line in tree[:2]] == [
            ["/sbin/init", "(root)"],
            ["alice", "(root)"],
        ]
        assert tree[-1].strip().startswith("└─ 4244 /tmp/evil-sleep 30")
        assert "forensics/web-01/4244.tar.zst" in text and "no-exec-from-tmp" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, EventScreen)


async def test_triage_from_the_list_saves_only_what_changed() -> None:
    client = FakeClient(events=[dict(e) for e in EVENTS])
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2", "t")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TriageDialog)
        dialog.query_one(Select).value = "in_progress"
        dialog.query_one("#comment", Input).value = "looking"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert client.calls[-1] == (
            "triage_event",
            {
                "event_id": EVENTS[0]["id"],
                "agent_id": EVENTS[0]["agent_id"],
                "status": "in_progress",
                "comment": "looking",
            },
        )
        content = events_view(app).query_one(".detail", Static).content
        assert "Triage    in progress" in str(content)
        await pilot.press("t")
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert (
            client.calls[-1][0] != "triage_event"
            or len([c for c in client.calls if c[0] == "triage_event"]) == 1
        )


async def test_triage_on_the_event_screen_updates_it_and_a_refusal_is_reported() -> None:
    client = FakeClient(events=[dict(e) for e in EVENTS])
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2", "enter", "t")
        await settle(pilot)
        app.screen.query_one("#assignee", Input).value = "eve"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert isinstance(app.screen, EventScreen)
        assert "Assignee   eve" in screen_text(app)
        client.fail = AuthError("analyst role needed", 403)
        await pilot.press("t")
        await settle(pilot)
        app.screen.query_one("#comment", Input).value = "x"
        await pilot.press("ctrl+s")
        await settle(pilot)
        messages = [n.message for n in app._notifications]
        assert any("Event not triaged: analyst role needed" in m for m in messages)


async def test_the_command_palette_offers_block_allow_triage_and_open() -> None:
    app = fixture_app()
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        sha = EVENTS[0]["sha256"][:12]
        for wanted in (f"Block hash {sha}…", f"Allow hash {sha}…", "Triage event", "Open event"):
            assert wanted in titles
        block = next(c for c in app.get_system_commands(app.screen) if c.title.startswith("Block"))
        block.callback()
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)


def lists(client: FakeClient) -> list[tuple[str, dict[str, Any]]]:
    """The calls for the list (the chart's counts come with each refresh, in their own call)."""
    return [call for call in client.calls if call[0] == "list_events"]


def many_events(count: int) -> list[dict[str, Any]]:
    return [event(n, n / 100, "high") for n in range(1, count + 1)]


async def test_scrolling_to_the_end_loads_the_next_page_and_pauses_the_refresh() -> None:
    client = FakeClient(events=many_events(1200))
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        view = events_view(app)
        table = view.query_one(DataTable)
        assert table.row_count == 500 and lists(client)[-1] == ("list_events", {"limit": 500})
        await pilot.press("ctrl+end")
        await settle(pilot)
        assert ("list_events", {"limit": 500, "offset": 500}) in client.calls
        assert table.row_count == 1000
        await pilot.press("ctrl+end")
        await settle(pilot)
        assert table.row_count == 1200 and len(view.rows) == 1200
        calls = len(client.calls)
        await pilot.press("ctrl+end")
        await settle(pilot)
        assert len(client.calls) == calls  # everything is loaded: no more requests
        view.reload(if_idle=True)  # the periodic refresh: paused while browsing
        await settle(pilot)
        assert len(client.calls) == calls
        await pilot.press("r")  # back to the newest page
        await settle(pilot)
        assert table.row_count == 500 and lists(client)[-1] == ("list_events", {"limit": 500})
        assert NOW  # the frozen clock the rows are relative to


async def test_scrolling_with_the_wheel_or_end_key_loads_too() -> None:
    client = FakeClient(agents=[], events=many_events(700))
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        table = events_view(app).query_one(DataTable)
        table.scroll_end(animate=False, immediate=True)
        await settle(pilot)
        await pilot.pause(0.1)
        await settle(pilot)
        assert table.row_count == 700
        status = app.query_one("#status", Static).content
        assert "live refresh paused (r: newest)" in str(status)

"""The Actions tab and creating actions from the Agents tab: progress per state, every agent's
result, create for the selected or marked agents (parameters checked first), cancel after
confirming, and refusals reported, over the fake client."""

from __future__ import annotations

import threading

import pytest
from rich.text import Text
from textual.widgets import Input, Static
from tui_fixtures import AGENTS, FakeClient, detail, fixture_app, settle
from tui_fixtures import table_text as rows

from trapsapi.errors import AuthError
from trapsctl.tui.app import DashboardApp
from trapsctl.tui.screens.action import ActionScreen
from trapsctl.tui.screens.action_dialog import ActionDialog
from trapsctl.tui.screens.confirm import ConfirmDialog
from trapsctl.tui.screens.policy import ExplainScreen

pytestmark = pytest.mark.anyio
SMALL = (80, 24)
LARGE = (160, 48)


def body(app: DashboardApp) -> str:
    content = app.screen.query_one(".body", Static).content
    return content.plain if isinstance(content, Text) else str(content)


def created(client: FakeClient) -> list[dict[str, object]]:
    return [args for name, args in client.calls if name == "create_action"]


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_actions_with_progress_then_every_agents_result(size: tuple[int, int]) -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        listed = rows(app, "actions")
        assert listed[0] == "3m ago scan label web 4 P1 D1 S1 F1 running admin"
        assert listed[1] == "20m ago isolate db-01 1 S1 done admin"  # the agent by name
        assert listed[2] == "5h ago get logs hostname build-* 2 S1 E1 done admin"
        assert listed[3] == "1d ago kill web-01 1 C1 cancelled soc-lead"
        text = detail(app, "actions")
        assert "1 pending · 1 delivered · 1 succeeded · 1 failed · 0 expired" in text
        assert "sweep after the xmrig alert" in text

        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ActionScreen)
        text = body(app)
        assert 'web-01               succeeded  2m ago    {"files": 5120, "malware": 1}' in text
        assert "web-02               failed     1m ago    /home: permission denied" in text
        assert "jump-01              pending" in text
        await pilot.press("escape")
        assert app.active_view().SOURCE == "actions"


async def test_cancel_asks_first_then_cancels_and_refreshes() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("5", "c")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        await settle(pilot)
        assert not [c for c in client.calls if c[0] == "cancel_action"]
        await pilot.press("c", "y")
        await settle(pilot)
        assert ("cancel_action", {"action_id": client.actions[0]["id"]}) in client.calls
        assert rows(app, "actions")[0].endswith("D1 S1 F1 C1 cancelled admin")
        assert any("Action cancelled" in str(n.message) for n in app._notifications)
        calls = len(client.calls)
        await pilot.press("c")  # nothing pending any more: the key does nothing
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog) and len(client.calls) == calls


async def test_cancel_from_the_action_screen_and_a_refusal_is_reported() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("5", "enter")
        await settle(pilot)
        client.fail = AuthError("the viewer role cannot cancel actions")
        await pilot.press("c", "y")
        await settle(pilot)
        messages = [str(n.message) for n in app._notifications]
        assert "Cancel refused: the viewer role cannot cancel actions" in messages
        assert isinstance(app.screen, ActionScreen)


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_isolate_the_marked_agents_one_action_each(size: tuple[int, int]) -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("space", "space")  # marks web-01, web-02 (the cursor moves down)
        assert rows(app, "agents")[0].startswith("● web-01")
        assert "2 marked" in detail(app, "agents")
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, ActionDialog)
        await pilot.press("tab", *"contain", "ctrl+s")
        await settle(pilot)
        made = created(client)
        assert [m["target"] for m in made] == [
            {"agent_id": AGENTS[0]["agent_id"]},
            {"agent_id": AGENTS[1]["agent_id"]},
        ]
        assert all(m["params"] == {"grace_s": 120} for m in made)
        assert all(m["comment"] == "contain" for m in made)
        assert "Action created (Isolate) for 2 agents" in [
            str(n.message) for n in app._notifications
        ]
        assert not rows(app, "agents")[0].startswith("●")  # the marks are cleared
        assert rows(app, "actions")[0].startswith("0s ago isolate web-02")


async def test_kill_checks_the_pid_before_sending_and_esc_sends_nothing() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("k")
        await settle(pilot)
        await pilot.press(*"12x", "enter")
        error = app.screen.query_one(".error", Static).content
        assert str(error) == "PID: a number from 2 to 4194304"
        assert isinstance(app.screen, ActionDialog) and not created(client)
        app.screen.query_one("#param", Input).value = "4243"
        await pilot.press("enter")
        await settle(pilot)
        assert created(client)[0]["params"] == {"pid": 4243}
        await pilot.press("s")
        await settle(pilot)
        assert app.screen.query_one("#param", Input).value == "/tmp,/var/tmp,/dev/shm,/home"
        await pilot.press("escape")
        await settle(pilot)
        assert len(created(client)) == 1


async def test_check_in_logs_unisolate_without_parameters() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        for key in ("c", "l", "u"):
            await pilot.press(key)
            await settle(pilot)
            await pilot.press("ctrl+s")
            await settle(pilot)
        assert [m["params"] for m in created(client)] == [{}, {}, {}]
        kinds = [args["kind"] for name, args in client.calls if name == "create_action"]
        assert kinds == ["checkin", "retrieve_logs", "unisolate"]


async def test_a_server_that_stops_answering_never_freezes_the_screens() -> None:
    client = FakeClient()
    app = fixture_app(client, refresh_interval=0.2, slow_after=0.3)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        client.gate = threading.Event()  # from now on, no reply
        try:
            await pilot.press("x")
            await pilot.pause(0.1)
            assert isinstance(app.screen, ExplainScreen)
            state = app.screen.query_one(".state", Static).content
            assert str(state) == "Loading …"
            await pilot.press("escape", "5")  # keys answer at once while the fetch hangs
            assert not isinstance(app.screen, ExplainScreen)
            assert app.active_view().SOURCE == "actions"
            await pilot.press("i")  # not on this tab: nothing happens
            await pilot.press("1", "i")
            assert isinstance(app.screen, ActionDialog)
            await pilot.press("ctrl+s")  # the create hangs in its worker, the UI does not
            await pilot.pause(0.8)
            await pilot.press("question_mark", "escape", "6")
            assert app.active_view().SOURCE == "servers"
            status = app.query_one("#status", Static).content
            assert "ESM slow — no reply for" in str(status)
        finally:
            client.gate.set()
        await settle(pilot)
        assert created(client)


async def test_the_action_screen_follows_the_progress_until_done() -> None:
    client = FakeClient()
    app = fixture_app(client, refresh_interval=0.2)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert "1 pending · 1 delivered" in body(app)
        action = client.actions[0]
        action["progress"], action["done"] = {"succeeded": 3, "failed": 1}, True
        for _ in range(100):
            await pilot.pause(0.05)
            if "3 succeeded" in body(app):
                break
        assert "0 pending · 0 delivered · 3 succeeded · 1 failed" in body(app)
        fetches = sum(1 for name, _ in client.calls if name == "get_action")
        await pilot.pause(0.6)
        await settle(pilot)
        assert sum(1 for name, _ in client.calls if name == "get_action") == fetches  # done

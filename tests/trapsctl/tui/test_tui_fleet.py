"""The Policies and Servers tabs, the explain of an agent's policy, the events chart from the
server's counts, and the command palette, driven by a pilot over the fake client."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.widgets import Sparkline, Static
from tui_fixtures import AGENTS, EVENTS, FakeClient, detail, fixture_app, settle, table_text, view

from trapsapi.errors import Unreachable
from trapsctl.tui.app import DashboardApp
from trapsctl.tui.screens.fetch_screen import FetchScreen
from trapsctl.tui.screens.policy import ExplainScreen, HistoryScreen, PolicyScreen

pytestmark = pytest.mark.anyio
SMALL = (80, 24)
LARGE = (160, 48)


def screen_text(app: DashboardApp) -> str:
    texts = []
    for part in (".state", ".body"):
        content = app.screen.query_one(part, Static).content
        texts.append(content.plain if isinstance(content, Text) else str(content))
    return "\n".join(texts)


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_policies_list_with_targets_and_versions_then_rules_and_history(
    size: tuple[int, int],
) -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        rows = table_text(app, "policies")
        assert rows[0].startswith("baseline 0 ✓ all 6")
        assert rows[1].startswith("db-servers 50 ✓ labels db · hostnames db-* 7")
        assert rows[2].startswith("legacy-build -10 ✗ hostnames build-* except labels ci 2")
        assert "malware.unknown_file  notify" in detail(app, "policies")

        await pilot.press("down", "enter")
        await settle(pilot)
        assert isinstance(app.screen, PolicyScreen)
        assert ("get_policy", {"name": "db-servers"}) in client.calls
        text = screen_text(app)
        assert "Version   7" in text
        assert "restrictions.paths" in text and "/tmp, /dev/shm" in text
        assert "child_process.parents" in text and "agent.heartbeat_interval_s" in text
        await pilot.press("escape", "h")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        assert ("policy_history", {"limit": 100, "policy": "db-servers"}) in client.calls
        text = screen_text(app)
        assert "v7" in text and "v6" in text and "v2" not in text
        assert "soc-lead  apply  db-servers (updated)" in text
        await pilot.press("escape")
        assert app.active_view().SOURCE == "policies"


async def test_a_policy_gone_meanwhile_says_so_and_r_retries() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        client.policies = client.policies[1:]  # deleted by another admin
        await pilot.press("enter")
        await settle(pilot)
        assert "Could not load: no policy 'baseline' (r: retry)" in screen_text(app)
        assert app.screen.query_one(".state").has_class("-error")
        client.policies.insert(0, client.fleet.POLICIES[0])
        await pilot.press("r")
        await settle(pilot)
        assert "malware.mode" in screen_text(app)


@pytest.mark.parametrize("size", [SMALL, LARGE])
async def test_explain_shows_which_rule_won_each_setting(size: tuple[int, int]) -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=size) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "x")
        await settle(pilot)
        assert isinstance(app.screen, ExplainScreen)
        assert ("explain_agent_policy", {"agent_id": AGENTS[2]["agent_id"]}) in client.calls
        text = screen_text(app)
        assert "db-01  policy version 7" in text
        assert "db-servers  priority 50 · label: label 'db'" in text
        assert "legacy-build  disabled" in text
        assert "restrictions.mode" in text and "← db-servers (priority 50)" in text
        assert "beats baseline: notification (priority 0)" in text
        assert "← built-in default (no policy sets it)" in text
        await pilot.press("escape")
        assert app.active_view().SOURCE == "agents"


async def test_servers_alive_and_gone() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        rows = table_text(app, "servers")
        assert rows[0] == "https://esm-1.example.org:8443 alive 0.1.0 4 12.4 12s ago"
        assert rows[2] == "https://esm-3.example.org:8443 gone 0.0.9 0 0.0 6h ago"
        await pilot.press("slash", *"gone", "enter")
        assert len(table_text(app, "servers")) == 1
        assert "No heartbeat lately" in detail(app, "servers")


async def test_the_events_chart_counts_every_event_on_the_server() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        assert ("event_counts", {"since": "24h", "bucket": "hour"}) in client.calls
        chart = view(app, "events").query_one(Sparkline)
        assert sum(chart.data or []) == len(EVENTS) and len(chart.data or []) == 24
        label = view(app, "events").query_one("#chart-label", Static).content
        assert str(label) == f"events · 24 h: {len(EVENTS)}"


def titles(app: DashboardApp) -> list[str]:
    return [command.title for command in app.get_system_commands(app.screen)]


async def test_the_palette_has_every_tab_and_the_main_actions() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        names = titles(app)
        for tab in ("Agents", "Events", "Hashes", "Policies", "Actions", "Servers"):
            assert f"Show {tab}" in names
        for wanted in (
            "Refresh", "Filter", "Keys", "Policy history",
            "Isolate web-01", "Unisolate web-01", "Scan web-01", "Check in web-01",
            "Retrieve logs web-01", "Kill process web-01", "Explain policy of web-01",
            "Events of web-01", "Open policy baseline", "History of policy baseline",
            "Open action scan on label web", "Cancel action scan on label web",
            "Triage event", "Open event",
        ):  # fmt: skip
            assert wanted in names, wanted
        await pilot.press("space", "space")
        assert "Isolate 2 marked agents" in titles(app)
        show = next(c for c in app.get_system_commands(app.screen) if c.title == "Show Servers")
        show.callback()
        await settle(pilot)
        assert app.active_view().SOURCE == "servers"
        explain = next(c for c in app.get_system_commands(app.screen) if "Explain" in c.title)
        explain.callback()
        await settle(pilot)
        assert isinstance(app.screen, ExplainScreen)


async def test_each_screen_reports_a_dead_esm_and_recovers() -> None:
    client = FakeClient()
    app = fixture_app(client)
    async with app.run_test(size=SMALL) as pilot:
        await settle(pilot)
        client.fail = Unreachable("http://esm: connection refused")
        await pilot.press("5", "enter")
        await settle(pilot)
        assert isinstance(app.screen, FetchScreen)
        assert "Could not load: http://esm: connection refused (r: retry)" in screen_text(app)
        client.fail = None
        await pilot.press("r")
        await settle(pilot)
        assert "HOST" in screen_text(app) and "web-02" in screen_text(app)

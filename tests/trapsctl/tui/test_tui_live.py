"""The dashboard against a real esmd (uvicorn on loopback, SQLite), and the command wiring."""

from __future__ import annotations

from typing import Any

import pytest
from ctl_helpers import run_cli
from textual.widgets import DataTable, Static
from tui_fixtures import settle

from trapsapi.admin_client import AdminClient
from trapsapi.agent_client import AgentClient, enroll
from trapsctl.tui.app import DashboardApp, make_dashboard

pytestmark = pytest.mark.anyio

HELLO = {"hostname": "live-01", "os": "linux", "os_version": "test", "agent_version": "0.1.0"}


def enrolled_agent(admin: AdminClient) -> str:
    token = admin.create_token(label="tui test")["token"]
    identity = enroll([admin.server], {"token": token, **HELLO})
    agent = AgentClient([admin.server], identity["agent_id"], identity["agent_secret"])
    module = {"name": "malware", "enabled": True, "mode": "prevention"}
    agent.checkin(
        {
            **HELLO,
            "ips": ["10.9.8.7"],
            "modules": [{**module, "mechanism": "fanotify", "healthy": True, "detail": ""}],
            "outbox_depth": 0,
            "events_dropped": 0,
        }
    )
    return str(identity["agent_id"])


async def test_the_agents_tab_shows_a_real_esm(admin: AdminClient) -> None:
    agent_id = enrolled_agent(admin)
    app = make_dashboard(admin, refresh_interval=0)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        table = app.query_one("#agents-view DataTable", DataTable)
        assert [row.key.value for row in table.ordered_rows] == [agent_id]
        assert table.get_row(agent_id)[0].plain == "live-01"
        detail = app.query_one("#agents-view .detail", Static).content
        assert "10.9.8.7" in str(detail) and "✓ malware" in str(detail)
        assert str(app.query_one("#status", Static).content).startswith("1 shown")


async def test_policies_explain_actions_servers_and_the_chart_on_a_real_esm(
    admin: AdminClient,
) -> None:
    agent_id = enrolled_agent(admin)
    policy = {
        "name": "live-policy",
        "priority": 5,
        "targets": {"include": {"hostnames": ["live-*"]}},
        "rules": {"malware": {"mode": "notification"}},
    }
    version = admin.apply_policies({"policies": [policy]})["version"]
    app = make_dashboard(admin, refresh_interval=0)
    async with app.run_test(size=(160, 48)) as pilot:
        await settle(pilot)
        policies = app.query_one("#policies-view DataTable", DataTable)
        row = [c.plain for c in policies.get_row("live-policy")]
        assert row[:5] == ["live-policy", "5", "✓", "hostnames live-*", str(version)]
        servers = app.query_one("#servers-view DataTable", DataTable)
        assert servers.row_count == 1 and servers.get_row_at(0)[1].plain == "alive"
        label = app.query_one("#events-view #chart-label", Static).content
        assert str(label) == "events · 24 h: 0"

        await pilot.press("x")
        await settle(pilot)
        body = str(app.screen.query_one(".body", Static).content)
        assert "live-policy  priority 5" in body and "malware.mode" in body
        await pilot.press("escape", "i", "ctrl+s")
        await settle(pilot)
        (action,) = admin.list_actions()["data"]
        assert action["type"] == "isolate" and action["target"] == {"agent_id": agent_id}
        await pilot.press("5")
        await settle(pilot)
        actions = app.query_one("#actions-view DataTable", DataTable)
        cells = [c.plain for c in actions.get_row(action["id"])]
        assert cells[1:5] == ["isolate", "live-01", "1", "P1"]
        await pilot.press("c", "y")
        await settle(pilot)
        assert admin.get_action(action["id"])["cancelled"] is True


def test_the_command_resolves_server_and_token_like_the_scripted_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def fake_run(self: DashboardApp, *args: Any, **kwargs: Any) -> None:
        seen.update(server=self.client.server, token=self.client.token)  # type: ignore[attr-defined]
        seen["interval"] = self.refresh_interval

    monkeypatch.setattr(DashboardApp, "run", fake_run)
    monkeypatch.setenv("TRAPSCTL_SERVER", "https://esm.example.org:8443")
    monkeypatch.setenv("TRAPSCTL_TOKEN", "tps_admin_x")
    result = run_cli("dashboard", "--refresh", "2")
    assert result.exit_code == 0, result.output
    assert seen == {"server": "https://esm.example.org:8443", "token": "tps_admin_x", "interval": 2}


def test_the_command_without_credentials_fails_before_drawing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(DashboardApp, "run", lambda self: pytest.fail("must not start"))
    result = run_cli("dashboard")
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ")

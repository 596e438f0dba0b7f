"""The console on a real ``trapsd run`` (root) against a live ESM: press c, see the check-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_helpers import ROOT_ONLY, Agents, trapsd
from console_fixtures import settle
from rich.text import Text
from textual.widgets import Static

from trapsd.console.app import make_console
from trapsd.console.source import control_source
from trapsd.files import read_json

pytest.importorskip("esmd.app", reason="esmd is not built yet")
pytestmark = [ROOT_ONLY, pytest.mark.anyio, pytest.mark.timeout(120, method="thread")]


def plain(app: Any, selector: str) -> str:
    content = app.screen.query_one(selector, Static).content
    return content.plain if isinstance(content, Text) else str(content)


async def test_check_in_now_from_the_console_of_a_real_agent(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    token = admin.create_token(label="console-test")["token"]
    enrolled = trapsd(
        "enroll", "--server", live_esm.url, "--token-file", "-", "--state-dir", state, stdin=token
    )
    assert enrolled.returncode == 0, enrolled.stderr
    agent_id = read_json(state / "identity.json")["agent_id"]
    agents.start(state)

    app = make_console(control_source(state, 30), refresh_interval=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert agent_id in plain(app, "#header")
        assert "malware" in str(app.overview.table.get_row_at(0)[1])
        await pilot.press("c")
        for _ in range(300):  # a real check-in: a request to the ESM and back
            await settle(pilot)
            if "Checking in" not in plain(app, "#checkin-result"):
                break
            await pilot.pause(0.05)
        result = plain(app, "#checkin-result")
        assert result.startswith(f"✓ Checked in to {live_esm.url}"), result
        await settle(pilot)
        assert "✓ connected" in plain(app, "#header")
        await pilot.press("2")  # this daemon may predate the events command: no crash either way
        await settle(pilot)
        note = plain(app, "#events-view .note")
        assert "not available in this agent version" in note or "security events" in note

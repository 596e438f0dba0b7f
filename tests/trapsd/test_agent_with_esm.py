"""The real agent (``python -m trapsd``) against a real esmd: enroll, check in, block, deliver.

Each daemon is a child process, stopped by a finalizer and bounded by coreutils ``timeout``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Agents, free_url, make_binary, trapsd, wait_for

from trapsd.files import read_json, write_json
from trapsd.outbox import peek_depth

pytest.importorskip("esmd.app", reason="esmd is not built yet")
pytestmark = [pytest.mark.timeout(120, method="thread")]
ROOT = os.geteuid() == 0


def enroll(admin: Any, url: str, state: Path) -> str:
    token = admin.create_token(label="trapsd-test")["token"]
    result = trapsd(
        "enroll", "--server", url, "--token-file", "-", "--state-dir", state, stdin=token
    )
    assert result.returncode == 0, result.stderr
    identity = read_json(state / "identity.json")
    assert identity["agent_id"] in result.stdout
    return str(identity["agent_id"])


def attack(binary: Path) -> str:
    """Run the blocked binary: refused by the kernel as root, killed on detection otherwise."""
    if ROOT:
        with pytest.raises(PermissionError) as info:
            subprocess.run([str(binary), "20"], timeout=20)
        assert info.value.errno == errno.EPERM
        return "prevented"
    assert subprocess.run([str(binary), "20"], timeout=20).returncode == -signal.SIGKILL
    return "killed"


def events_for(admin: Any, agent_id: str, sha256: str) -> list[dict[str, Any]]:
    events = admin.list_events(agent_id=agent_id, limit=1000)["data"]
    return [e for e in events if e["sha256"] == sha256]


def agent_row(admin: Any, agent_id: str) -> dict[str, Any] | None:
    row: dict[str, Any] = admin.get_agent(agent_id)
    return row if row["health"] == "connected" else None


def test_enroll_run_block_and_deliver_exactly_once(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = enroll(admin, live_esm.url, state)
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "identity.json").stat().st_mode & 0o777 == 0o600

    process = agents.start(state)
    row = wait_for(lambda: agent_row(admin, agent_id), 20)
    malware = next(m for m in row["modules"] if m["name"] == "malware")
    if ROOT:
        assert (malware["mechanism"], malware["healthy"]) == ("fanotify", True)
    assert row["footprint"]["rss_bytes"] > 0

    evil, sha256 = make_binary(tmp_path, "sleep", "evil-sleep")
    admin.set_verdict(sha256, "malware", "trapsd test binary")
    checkin = trapsd("checkin", "--state-dir", state)
    assert checkin.returncode == 0, checkin.stderr
    assert "checked in" in checkin.stdout
    action = attack(evil)

    found = wait_for(lambda: events_for(admin, agent_id, sha256), 5)
    event = found[0]
    assert (event["action"], event["module"], event["severity"]) == (action, "malware", "high")
    assert event["process_path"] == str(evil)
    assert event["ppid"] == os.getpid() and event["user"] == "root"
    # The event triggered an immediate check-in, and nothing is sent twice.
    trapsd("checkin", "--state-dir", state)
    assert len(events_for(admin, agent_id, sha256)) == 1
    status = json.loads(trapsd("status", "--state-dir", state, "-o", "json").stdout)
    assert status["running"] and status["connected"] and status["outbox_depth"] == 0
    assert status["policy_version"] is not None

    assert agents.stop(process) == 0  # SIGTERM: a clean stop
    down = trapsd("status", "--state-dir", state)
    assert down.returncode == 0 and "not running" in down.stdout
    assert "✗ malware" in down.stdout and "trapsd stopped at" in down.stdout


def test_events_survive_kill_9_and_an_outage_and_arrive_once(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = enroll(admin, live_esm.url, state)
    # Three different files: duplicates of one event (same path) would be rate limited.
    samples = [make_binary(tmp_path, "sleep", f"evil-sleep-{n}") for n in range(3)]
    for _, sha256 in samples:
        admin.set_verdict(sha256, "malware", "trapsd test binary")
    process = agents.start(state)
    wait_for(lambda: agent_row(admin, agent_id), 20)
    assert trapsd("checkin", "--state-dir", state).returncode == 0
    assert agents.stop(process) == 0

    # The ESM becomes unreachable; the agent keeps enforcing its saved policy offline.
    identity = read_json(state / "identity.json")
    write_json(state / "identity.json", {**identity, "servers": [free_url()]})
    process = agents.start(state)
    offline = trapsd("checkin", "--state-dir", state)
    assert offline.returncode == 3, offline.stderr  # server unreachable
    for evil, _ in samples:
        attack(evil)
    # >= 3: the behaviour modules (shipped defaults) may also report other runs on this host
    wait_for(lambda: (peek_depth(state) or (0, 0))[0] >= 3, 10)
    agents.kill9(process, state)
    depth, dropped = peek_depth(state) or (0, 0)
    assert depth >= 3 and dropped == 0  # committed before anything else happened

    write_json(state / "identity.json", identity)
    agents.start(state)

    def delivered() -> list[dict[str, Any]]:
        return [e for _, sha256 in samples for e in events_for(admin, agent_id, sha256)]

    assert wait_for(lambda: len(delivered()) >= 3 or None, 15)
    time.sleep(0.5)
    events = delivered()
    assert len(events) == 3 and len({e["id"] for e in events}) == 3
    status = json.loads(trapsd("status", "--state-dir", state, "-o", "json").stdout)
    assert (status["outbox_depth"], status["events_dropped"]) == (0, 0)


def test_two_agents_run_side_by_side(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    ids = [enroll(admin, live_esm.url, tmp_path / name) for name in ("a", "b")]
    for name in ("a", "b"):
        agents.start(tmp_path / name)
    for agent_id in ids:
        wait_for(lambda agent_id=agent_id: agent_row(admin, agent_id), 20)
    for name in ("a", "b"):
        result = trapsd("status", "--state-dir", tmp_path / name, "-o", "json")
        assert json.loads(result.stdout)["running"]

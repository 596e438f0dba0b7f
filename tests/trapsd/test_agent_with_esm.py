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

    # A new secret without re-enrollment: saved, then proven by a check-in with it.
    secret = read_json(state / "identity.json")["agent_secret"]
    rotated = trapsd("rotate-credential", "--state-dir", state, "-o", "json")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert json.loads(rotated.stdout)["rotated"] is True
    assert read_json(state / "identity.json")["agent_secret"] != secret
    assert trapsd("checkin", "--state-dir", state).returncode == 0

    assert agents.stop(process) == 0  # SIGTERM: a clean stop, and the ESM is told
    assert admin.get_agent(agent_id)["health"] == "stopped"
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


def _outbox_ids(state: Path) -> set[str]:
    """The event IDs committed in a stopped agent's outbox (read-only)."""
    import sqlite3

    db = sqlite3.connect(f"file:{state / 'outbox.db'}?mode=ro", uri=True)
    try:
        return {str(row[0]) for row in db.execute("SELECT id FROM events")}
    finally:
        db.close()


def test_repeated_kill_9_during_a_burst_delivers_every_committed_event_once(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    """SIGKILL the agent again and again while it blocks a burst of executions: every event
    it committed reaches the server, and none twice."""
    state = tmp_path / "agent"
    agent_id = enroll(admin, live_esm.url, state)
    samples = [make_binary(tmp_path, "true", f"burst-{n}") for n in range(48)]
    admin.import_hashes("burst", [{"sha256": sha} for _, sha in samples])
    process = agents.start(state)
    wait_for(lambda: agent_row(admin, agent_id), 20)
    assert trapsd("checkin", "--state-dir", state).returncode == 0

    committed: set[str] = set()
    stopped = 0
    for round_ in range(4):
        burst = samples[round_ * 12 : (round_ + 1) * 12]
        for n, (evil, _) in enumerate(burst):
            try:
                subprocess.run([str(evil)], timeout=10)
            except PermissionError:
                stopped += 1
            if n == 7:  # mid-burst: the agent dies with events in its queue and outbox
                agents.kill9(process, state)
        committed |= _outbox_ids(state)
        process = agents.start(state)
        wait_for(lambda: agent_row(admin, agent_id), 20)
    assert stopped >= 4 * 8 if ROOT else True  # prevented while the agent was up

    hashes = {sha for _, sha in samples}

    def at_server() -> list[dict[str, Any]]:
        events = admin.list_events(agent_id=agent_id, limit=1000)["data"]
        return [e for e in events if e["sha256"] in hashes]

    wait_for(lambda: (peek_depth(state) or (1, 0))[0] == 0 or None, 20)
    events = at_server()
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids))  # exactly once
    assert committed <= set(ids)  # nothing committed was lost
    if ROOT:
        assert len(ids) >= stopped  # every execution it prevented is an event at the server


def test_a_verdict_learnt_between_check_ins_stops_the_next_execution(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy the agent holds does not know the hash yet; the agent asks the ESM about
    the unknown file it just let run, and stops it the next time."""
    if not ROOT:
        pytest.skip("needs fanotify (root)")
    # Without the wake channel the policy stays stale until the next heartbeat (with it, the
    # new policy may arrive before the first run: the verdict query is what is tested here).
    monkeypatch.setenv("TRAPSD_WAKE_CHANNEL", "false")
    state = tmp_path / "agent"
    agent_id = enroll(admin, live_esm.url, state)
    process = agents.start(state)
    wait_for(lambda: agent_row(admin, agent_id), 20)
    evil, sha256 = make_binary(tmp_path, "true", "late-verdict")
    admin.import_hashes("late", [{"sha256": sha256}])  # no check-in: the policy is stale
    assert subprocess.run([str(evil)], timeout=10).returncode == 0  # unknown: allowed

    def blocked() -> bool | None:
        try:
            subprocess.run([str(evil)], timeout=10)
        except PermissionError:
            return True
        return None

    assert wait_for(blocked, 10, interval=0.2)
    assert wait_for(lambda: events_for(admin, agent_id, sha256) or None, 10)
    assert agents.stop(process) == 0


def test_stop_and_uninstall_need_the_policy_password(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    """Tamper protection: a wrong password is refused and reported to the ESM; the right one
    stops the agent with the exit status systemd does not restart."""
    admin.apply_policies(
        {
            "policies": [
                {
                    "name": "stop-password",
                    "priority": 500,
                    "targets": {"include": {"all": True}},
                    "rules": {"agent": {"uninstall_password": "a long stop password"}},
                }
            ]
        }
    )
    state = tmp_path / "agent"
    agent_id = enroll(admin, live_esm.url, state)
    process = agents.start(state)
    wait_for(lambda: agent_row(admin, agent_id), 20)
    assert trapsd("checkin", "--state-dir", state).returncode == 0
    refused = trapsd("stop", "--password-stdin", "--state-dir", state, stdin="guess\n")
    assert refused.returncode == 4 and "wrong or missing stop password" in refused.stderr
    assert process.poll() is None  # still running
    assert trapsd("uninstall", "--state-dir", state).returncode == 4  # no password at all

    def tamper_events() -> list[dict[str, Any]] | None:
        trapsd("checkin", "--state-dir", state)
        found = admin.list_events(agent_id=agent_id, module="tamper")["data"]
        return found if len(found) == 2 else None

    events = wait_for(tamper_events, 15)
    assert {e["details"]["attempt"] for e in events} == {"stop", "uninstall"}
    stopped = trapsd(
        "stop", "--password-stdin", "--state-dir", state, stdin="a long stop password\n"
    )
    assert stopped.returncode == 0, stopped.stderr
    assert process.wait(20) == 64  # coreutils timeout passes the daemon's status on
    assert admin.get_agent(agent_id)["health"] == "stopped"

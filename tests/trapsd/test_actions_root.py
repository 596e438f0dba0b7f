"""Actions run by a real ``trapsd`` against a real esmd, and isolation in a network namespace.

As root (CI): quarantine keeps owner and mode, kill checks the start time, isolation is tested
only inside ``unshare -n`` so the host network is never touched.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from agent_helpers import ROOT_ONLY, Agents, make_binary, trapsd, wait_for
from test_agent_with_esm import agent_row, enroll

from trapsd.actions import quarantine

pytest.importorskip("esmd.app", reason="esmd is not built yet")
pytestmark = [pytest.mark.timeout(150, method="thread"), ROOT_ONLY]
HERE = Path(__file__).parent


def finished(admin: Any, action_id: str) -> dict[str, Any] | None:
    (delivery,) = admin.get_action(action_id)["deliveries"]
    return delivery if delivery["state"] in ("succeeded", "failed") else None


def run_actions(
    admin: Any, state: Path, agent_id: str, *specs: tuple[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Create the actions, make the agent check in, and wait for every result."""
    ids = [
        admin.create_action(kind, {"agent_id": agent_id}, params)["id"] for kind, params in specs
    ]
    assert trapsd("checkin", "--state-dir", state).returncode == 0
    return [wait_for(lambda i=i: finished(admin, i), 60, 0.2) for i in ids]


def test_actions_on_a_real_agent(live_esm: Any, admin: Any, agents: Agents, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    agent_id = enroll(admin, live_esm.url, state)
    process = agents.start(state)
    wait_for(lambda: agent_row(admin, agent_id), 20)

    scanned = tmp_path / "scanned"
    scanned.mkdir()
    evil, sha256 = make_binary(scanned, "true", "evil-true")
    make_binary(scanned, "true", "harmless-true")
    (scanned / "notes.txt").write_text("not executable")
    admin.set_verdict(sha256, "malware", "actions test")
    assert trapsd("checkin", "--state-dir", state).returncode == 0  # policy with the verdict

    victim = subprocess.Popen(["sh", "-c", "sleep 120 & wait"])
    wait_for(lambda: psutil.Process(victim.pid).children(), 5)
    child = psutil.Process(victim.pid).children()[0]
    started = psutil.Process(victim.pid).create_time()
    try:
        scan, wrong_kill, logs, checkin = run_actions(
            admin,
            state,
            agent_id,
            ("scan", {"paths": [str(scanned)]}),
            ("kill_process", {"pid": victim.pid, "start_time": started + 5}),
            ("retrieve_logs", {}),
            ("checkin", {}),
        )
        assert scan["state"] == "succeeded", scan
        assert scan["result"]["matches"] == [
            {"path": str(evil), "sha256": sha256, "verdict": "malware"}
        ]
        assert (scan["result"]["executables"], scan["result"]["files"]) == (2, 3)
        assert wrong_kill["state"] == "failed" and "reused" in wrong_kill["detail"]
        assert victim.poll() is None and child.is_running()  # nothing was killed
        assert checkin["state"] == "succeeded"

        assert logs["state"] == "succeeded" and logs["has_logs"], logs
        bundle = admin.action_logs(logs_id(admin, "retrieve_logs"), agent_id)
        document = json.loads(gzip.decompress(base64.b64decode(bundle["content_b64"])))
        assert document["status"]["agent_id"] == agent_id
        assert any("scan" in line for line in document["log"])

        (kill,) = run_actions(
            admin, state, agent_id, ("kill_process", {"pid": victim.pid, "start_time": started})
        )
        assert kill["state"] == "succeeded", kill
        assert victim.wait(5) == -9 and not child.is_running()
        assert sorted(kill["result"]["killed"]) == sorted([victim.pid, child.pid])
    finally:
        if victim.poll() is None:
            victim.kill()
        subprocess.run(["pkill", "-P", str(victim.pid)], check=False)

    # Quarantine and restore a real file: content, mode, owner and mtime come back.
    target = tmp_path / "suspect.bin"
    target.write_bytes(b"\x7fELF suspicious bytes")
    os.chown(target, 1234, 2345)
    target.chmod(0o750)
    before = target.stat()
    (quarantined,) = run_actions(
        admin, state, agent_id, ("quarantine", {"path": str(target), "reason": "test"})
    )
    assert quarantined["state"] == "succeeded", quarantined
    assert not target.exists()
    assert (state / "quarantine").stat().st_mode & 0o777 == 0o700
    (item,) = quarantined["result"]["quarantined"]
    listed = trapsd("quarantine", "list", "--state-dir", state, "-o", "json")
    (local,) = json.loads(listed.stdout)
    assert (local["id"], local["uid"], local["gid"], local["mode"]) == (
        item["id"],
        1234,
        2345,
        0o750,
    )
    assert [e["quarantine_id"] for e in admin.list_quarantine()["data"]] == [item["id"]]
    assert item["sha256"] in json.loads((state / "local_blocks.json").read_text())

    (restored,) = run_actions(admin, state, agent_id, ("restore", {"quarantine_id": item["id"]}))
    assert restored["state"] == "succeeded", restored
    after = target.stat()
    assert target.read_bytes() == b"\x7fELF suspicious bytes"
    assert (after.st_uid, after.st_gid, after.st_mode) == (1234, 2345, before.st_mode)
    assert after.st_mtime_ns == before.st_mtime_ns
    assert admin.list_quarantine()["count"] == 0
    assert json.loads((state / "local_blocks.json").read_text()) == []

    (cleared,) = run_actions(admin, state, agent_id, ("clear_history", {}))
    assert cleared["state"] == "succeeded" and cleared["result"]["actions"] >= 5

    # Killed in the middle of a long scan: the restarted agent still reports a result.
    # 64 sparse 128 MiB executables (8 GiB of zeros to hash) outlast the second before the kill on
    # any machine, unlike a walk of /usr that a small image with a warm cache finishes at once.
    slow = tmp_path / "slow"
    slow.mkdir()
    for index in range(64):
        with open(slow / f"big{index}", "wb") as handle:
            handle.truncate(128 * 1024 * 1024)
        (slow / f"big{index}").chmod(0o755)
    params = {"paths": [str(slow)], "max_seconds": 120}
    long_scan = admin.create_action("scan", {"agent_id": agent_id}, params)["id"]
    assert trapsd("checkin", "--state-dir", state).returncode == 0
    wait_for(lambda: admin.get_action(long_scan)["deliveries"][0]["state"] == "delivered", 10)
    time.sleep(1.0)
    agents.kill9(process, state)
    process = agents.start(state)
    interrupted = wait_for(lambda: finished(admin, long_scan), 30, 0.2)
    assert interrupted["state"] == "failed" and "interrupted" in interrupted["detail"]

    # Uninstall: reported first, then the agent stops and only the quarantine is left.
    uninstall = admin.create_action("uninstall", {"agent_id": agent_id})["id"]
    trapsd("checkin", "--state-dir", state)  # its start-up check-in may have got it already
    uninstalled = wait_for(lambda: finished(admin, uninstall), 30, 0.2)
    assert uninstalled["state"] == "succeeded"
    wait_for(lambda: process.poll() is not None, 20)
    assert [p.name for p in state.iterdir()] == ["quarantine"]


def logs_id(admin: Any, kind: str) -> str:
    (action,) = admin.list_actions(type=kind)["data"]
    return str(action["id"])


def test_quarantine_restore_refuses_an_existing_path_and_works_without_the_daemon(
    tmp_path: Path,
) -> None:
    state = tmp_path / "agent"
    state.mkdir(mode=0o700)
    victim = tmp_path / "tool"
    victim.write_bytes(b"tool v1")
    entry = quarantine.quarantine_file(state, str(victim), "test")
    victim.write_bytes(b"a new file")
    refused = trapsd("quarantine", "restore", entry["id"], "--state-dir", state)
    assert refused.returncode == 1 and "exists now" in refused.stderr
    assert refused.stderr.count("\n") == 1 and victim.read_bytes() == b"a new file"
    victim.unlink()
    ok = trapsd("quarantine", "restore", entry["id"], "--state-dir", state)
    assert ok.returncode == 0, ok.stderr
    assert victim.read_bytes() == b"tool v1"
    assert trapsd("quarantine", "restore", "--state-dir", state).returncode == 2
    assert json.loads(trapsd("quarantine", "list", "--state-dir", state, "-o", "json").stdout) == []


def test_isolation_in_a_network_namespace(tmp_path: Path) -> None:
    """Blocks an outside address, keeps the ESM reachable; rolls back when no ESM answers."""
    result = subprocess.run(
        [
            "timeout",
            "60",
            "unshare",
            "-n",
            sys.executable,
            str(HERE / "isolation_netns.py"),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {
        "before": True,
        "outside": False,
        "esm_route": True,
        "kept": True,
        "esm_answers": True,
        "rules": 4,
        "rolled_back": True,
        "after_rollback": True,
        "rules_after": 0,
        "state_after": False,
    }

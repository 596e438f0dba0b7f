"""``trapsd logs collect``: the retrieve_logs bundle written locally, root only."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
from agent_helpers import Agents, free_url, trapsd

from trapsd.cli import main
from trapsd.config import AgentSettings
from trapsd.identity import Identity, save_identity
from trapsd.log_collection import daemon_reply

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="trapsd logs collect is root only")
SECTIONS = {"collected_at", "status", "settings", "actions", "quarantine", "isolation", "log"}


def _bundle(path: Path) -> dict[str, object]:
    document: dict[str, object] = json.loads(gzip.decompress(path.read_bytes()))
    return document


def test_from_the_running_daemon_then_from_the_state_dir(agents: Agents, tmp_path: Path) -> None:
    state = tmp_path / "agent"
    save_identity(state, Identity("agent-1", "s", [free_url()]))
    agents.start(state)
    out = tmp_path / "bundle.json.gz"
    done = trapsd("logs", "collect", "-O", out, "-o", "json", "--state-dir", state)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["daemon_running"] is True and summary["file"] == str(out)
    assert summary["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert out.stat().st_mode & 0o777 == 0o600
    bundle = _bundle(out)
    assert set(bundle) == SECTIONS
    assert bundle["status"]["agent_id"] == "agent-1"  # type: ignore[index]
    assert any("running: agent agent-1" in line for line in bundle["log"])  # type: ignore[attr-defined]
    assert summary["log_lines"] == len(bundle["log"])  # type: ignore[arg-type]

    again = trapsd("logs", "collect", "-O", out, "--state-dir", state)  # never overwrites
    assert again.returncode == 2 and "exists" in again.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == summary["sha256"]

    agents.stop_all()
    offline = tmp_path / "offline.json.gz"
    done = trapsd("logs", "collect", "-O", offline, "--state-dir", state)
    assert done.returncode == 0, done.stderr
    assert "0 log lines from the state dir (daemon down)" in done.stdout
    bundle = _bundle(offline)
    assert set(bundle) == SECTIONS and bundle["log"] == []
    assert bundle["status"]["agent_id"] == "agent-1"  # type: ignore[index]


def test_refused_to_anyone_but_root(tmp_path: Path) -> None:
    state = tmp_path / "agent"
    save_identity(state, Identity("agent-1", "s", [free_url()]))
    out = tmp_path / "bundle.json.gz"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a real process of user nobody runs the command line
        code = 99
        try:
            os.close(read)
            sys.stderr = os.fdopen(write, "w")  # the one-line error comes back here
            os.setuid(65534)
            code = main(["logs", "collect", "-O", str(out), "--state-dir", str(state)])
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as stderr:
        message = stderr.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 4 and "root only" in message, message
    assert not out.exists()
    # and the daemon's side, for a member of the control-socket group
    reply = daemon_reply({}, AgentSettings(state_dir=state), [], [], {"peer_uid": 1000})
    assert reply["ok"] is False and reply["exit_code"] == 4

"""The walking skeleton end to end, with real esmd, trapsd and trapsctl processes on loopback."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e password, long enough"
sys.path.insert(0, str(ROOT / "scripts"))

from localrun import Programs, free_port, healthy  # noqa: E402


class Fleet(Programs):
    """The programs of one test, with an isolated trapsctl config; commands must succeed."""

    def ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.run(*args, stdin=stdin)
        assert result.returncode == 0, (args, result.returncode, result.stderr)
        return result.stdout


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"))
    with Fleet(tmp_path, env) as harness:
        yield harness


def test_block_a_hash_end_to_end(fleet: Fleet, database_url: str, tmp_path: Path) -> None:
    esm_dir, agent_dir = tmp_path / "esm", tmp_path / "agent"
    db = ["--data-dir", str(esm_dir), "--database-url", database_url]
    fleet.ok(
        "esmd",
        "init",
        *db,
        "--admin-user",
        "admin",
        "--admin-password-stdin",
        stdin=PASSWORD + "\n",
    )
    url = f"http://127.0.0.1:{free_port()}"
    fleet.start("esmd", "serve", *db, "--port", url.rsplit(":", 1)[1])
    fleet.wait_for("esmd", lambda: healthy(url))

    fleet.ok(
        "trapsctl",
        "login",
        "--server",
        url,
        "--username",
        "admin",
        "--password-stdin",
        "--insecure-storage",
        stdin=PASSWORD + "\n",
    )
    token = json.loads(fleet.ok("trapsctl", "tokens", "create", "-o", "json"))["token"]
    fleet.ok(
        "trapsd",
        "enroll",
        "--server",
        url,
        "--token-file",
        "-",
        "--state-dir",
        str(agent_dir),
        stdin=token + "\n",
    )
    fleet.start("trapsd", "run", "--state-dir", str(agent_dir))

    def connected() -> dict[str, Any] | None:
        agents = json.loads(fleet.ok("trapsctl", "agents", "list", "-o", "json"))
        return next((a for a in agents if a["health"] == "connected"), None)

    agent = fleet.wait_for("the agent to connect", connected)
    assert agent["hostname"] == socket.gethostname()
    malware = next(m for m in agent["modules"] if m["name"] == "malware")
    if os.geteuid() == 0:
        assert (malware["mechanism"], malware["healthy"]) == ("fanotify", True)

    evil = tmp_path / "evil-sleep"
    evil.write_bytes(
        Path(shutil.which("sleep") or "/bin/sleep").read_bytes() + b"\x00" + uuid.uuid4().bytes
    )
    evil.chmod(0o755)
    sha256 = hashlib.sha256(evil.read_bytes()).hexdigest()
    fleet.ok("trapsctl", "hashes", "block", sha256)
    fleet.ok("trapsd", "checkin", "--state-dir", str(agent_dir))

    started = time.monotonic()
    if os.geteuid() == 0:
        with pytest.raises(PermissionError) as info:
            subprocess.run([str(evil), "5"], check=False)
        assert info.value.errno == errno.EPERM
        subprocess.run(["/bin/true"], check=True)  # everything else still runs
    else:
        assert subprocess.run([str(evil), "30"], timeout=20).returncode == -signal.SIGKILL

    def event() -> dict[str, Any] | None:
        events = json.loads(fleet.ok("trapsctl", "events", "list", "-o", "json"))
        return next((e for e in events if e["sha256"] == sha256), None)

    found = fleet.wait_for("the event", event, timeout=5)
    assert time.monotonic() - started < 5
    assert found["action"] == ("prevented" if os.geteuid() == 0 else "killed")
    assert found["module"] == "malware"
    assert found["agent_id"] == agent["agent_id"]
    assert found["process_path"] == str(evil)
    table = fleet.ok("trapsctl", "events", "list")
    assert sha256[:12] in table


@pytest.mark.skipif(os.geteuid() != 0, reason="the demo blocks before execution only as root")
def test_make_demo_runs_from_a_clean_state() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        capture_output=True,
        text=True,
        timeout=150,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exec refused by the kernel" in result.stderr
    assert "prevented" in result.stdout

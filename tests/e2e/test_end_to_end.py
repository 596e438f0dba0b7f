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
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e password, long enough"


class Fleet:
    """Starts and always stops the programs of one test; runs CLIs with an isolated config."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.processes: list[subprocess.Popen[bytes]] = []
        self.env = dict(os.environ)
        self.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")

    def run(self, *args: str, stdin: str | None = None, expect: int = 0) -> str:
        result = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        assert result.returncode == expect, (args, result.returncode, result.stderr)
        return result.stdout

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{args[0]}.log").open("ab")
        process = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]], stdout=log, stderr=subprocess.STDOUT, env=self.env
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def wait_until(probe: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    harness = Fleet(tmp_path)
    try:
        yield harness
    finally:
        harness.stop()


def test_block_a_hash_end_to_end(fleet: Fleet, database_url: str, tmp_path: Path) -> None:
    esm_dir, agent_dir = tmp_path / "esm", tmp_path / "agent"
    db = ["--data-dir", str(esm_dir), "--database-url", database_url]
    fleet.run(
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
    wait_until(lambda: healthy(url), 20)

    fleet.run(
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
    token = json.loads(fleet.run("trapsctl", "tokens", "create", "-o", "json"))["token"]
    fleet.run(
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
        agents = json.loads(fleet.run("trapsctl", "agents", "list", "-o", "json"))
        return next((a for a in agents if a["health"] == "connected"), None)

    agent = wait_until(connected, 20)
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
    fleet.run("trapsctl", "hashes", "block", sha256)
    fleet.run("trapsd", "checkin", "--state-dir", str(agent_dir))

    started = time.monotonic()
    if os.geteuid() == 0:
        with pytest.raises(PermissionError) as info:
            subprocess.run([str(evil), "5"], check=False)
        assert info.value.errno == errno.EPERM
        subprocess.run(["/bin/true"], check=True)  # everything else still runs
    else:
        assert subprocess.run([str(evil), "30"], timeout=20).returncode == -signal.SIGKILL

    def event() -> dict[str, Any] | None:
        events = json.loads(fleet.run("trapsctl", "events", "list", "-o", "json"))
        return next((e for e in events if e["sha256"] == sha256), None)

    found = wait_until(event, 5)
    assert time.monotonic() - started < 5
    assert found["action"] == ("prevented" if os.geteuid() == 0 else "killed")
    assert found["module"] == "malware"
    assert found["agent_id"] == agent["agent_id"]
    assert found["process_path"] == str(evil)
    table = fleet.run("trapsctl", "events", "list")
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

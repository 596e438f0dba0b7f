"""Helpers shared by the agent's tests (imported by name, like tests/esmd/esmd_harness.py)."""

from __future__ import annotations

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
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess, Popen
from typing import Any, TypeVar

import psutil
import pytest

from trapsd.policy import Policy, compile_policy

T = TypeVar("T")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (fanotify, proc connector)")


def make_binary(directory: Path, source: str, name: str) -> tuple[Path, str]:
    """A copy of a system binary with unique bytes appended: it runs, with its own SHA-256.

    The bytes are unique per call so agents of tests running in parallel never share a hash.
    """
    path = directory / name
    original = Path(shutil.which(source) or f"/bin/{source}").read_bytes()
    path.write_bytes(original + b"\0traps-test-" + uuid.uuid4().hex.encode())
    path.chmod(0o755)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def policy_for(
    blocked: list[str] = [],  # noqa: B006 - never mutated
    allowed: list[str] = [],  # noqa: B006
    mode: str = "prevention",
    version: int = 1,
    enabled: bool = True,
    modules: dict[str, Any] | None = None,
) -> Policy:
    """A malware policy; the other exec modules are OFF unless ``modules`` configures them.

    (Their shipped defaults watch /tmp, where every test's files live.) So are the behaviour
    modules: they watch the whole host, where other test runs execute memfds and shells.
    """
    return compile_policy(
        {
            "version": version,
            "heartbeat_interval_s": 3600,
            "modules": {
                "malware": {"enabled": enabled, "mode": mode, "user_alert": False},
                "restrictions": {"enabled": False},
                "child_process": {"enabled": False},
                **BEHAVIOUR_OFF,
                **(modules or {}),
            },
            "blocked_hashes": blocked,
            "allowed_hashes": allowed,
        }
    )


BEHAVIOUR_OFF = {
    name: {"enabled": False}
    for name in ("reverse_shell", "fileless", "ld_preload", "ptrace", "wx_memory")
} | {"privilege_escalation": {"enabled": False}}


def wait_for(probe: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """The first truthy value of ``probe()``; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Sensors:
    """Starts sensors for one test and stops every one of them, whatever happens."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    def start(self, factory: Callable[[], Any]) -> Any:
        sensor = factory()
        sensor.start()
        self.started.append(sensor)
        return sensor

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()


def trapsd(*args: object, stdin: str | None = None, timeout: float = 60) -> CompletedProcess[str]:
    """Run the real ``trapsd`` command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "trapsd", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_url() -> str:
    """A loopback URL nothing listens on (a server that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Agents:
    """``trapsd run`` daemons as real processes, always stopped at the end of the test.

    Each runs under coreutils ``timeout``, so none can outlive a test run that crashed.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.running: list[tuple[Popen[bytes], Path]] = []

    def start(self, state_dir: Path, *options: str) -> Popen[bytes]:
        log = (self.tmp_path / f"trapsd-{len(self.running)}.log").open("ab")
        command = [sys.executable, "-m", "trapsd", *options, "run", "--state-dir", str(state_dir)]
        process = subprocess.Popen(
            ["timeout", "-k", "5", "100", *command],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.running.append((process, state_dir))
        wait_for(lambda: self.pid(state_dir, process), 20)
        return process

    def pid(self, state_dir: Path, process: Popen[bytes]) -> int | None:
        """The daemon's pid once it is up (from its status file)."""
        if process.poll() is not None:
            raise AssertionError(f"trapsd exited with {process.returncode}: {self.logs()}")
        try:
            status = json.loads((state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return None
        children = {p.pid for p in psutil.Process(process.pid).children()}
        pid = status.get("pid")
        return pid if status.get("running") and pid in children else None

    def kill9(self, process: Popen[bytes], state_dir: Path) -> None:
        pid = self.pid(state_dir, process)
        assert pid
        os.kill(pid, signal.SIGKILL)
        process.wait(10)

    def stop(self, process: Popen[bytes]) -> int:
        if process.poll() is None:
            for child in psutil.Process(process.pid).children():
                child.terminate()  # SIGTERM to trapsd itself: a clean stop
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                for child in psutil.Process(process.pid).children():
                    child.kill()
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for process, _ in reversed(self.running):
            self.stop(process)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.tmp_path.glob("trapsd-*.log"))

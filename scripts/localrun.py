"""Run Traps programs as local child processes: shared by `make demo`, `bench/` and the e2e tests.

Every process started through :class:`Programs` is stopped (SIGTERM, then SIGKILL after 10 s)
when the ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthy(url: str, path: str = "/healthz") -> bool:
    try:
        with urllib.request.urlopen(url + path, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


class Programs:
    """Runs `esmd`, `trapsd`, `trapsctl` (from this venv) with one environment and log dir."""

    def __init__(self, log_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.env = dict(env) if env is not None else None
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Programs:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command to completion (60 s at most); the caller checks the exit code."""
        return subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a long-running command; its output goes to <log_dir>/<program>.log."""
        with (self.log_dir / f"{Path(args[0]).name}.log").open("ab") as log:
            process = subprocess.Popen(
                [str(BIN / args[0]), *args[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
        """Poll ``probe`` until it returns something true; fail fast if a program died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            for process in self.processes:
                if process.poll() is not None:
                    name = Path(str(process.args[0])).name  # type: ignore[index]
                    raise TimeoutError(f"{what}: {name} exited ({process.returncode})")
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")

    def log(self, program: str) -> str:
        path = self.log_dir / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()


def describe(result: subprocess.CompletedProcess[Any]) -> str:
    """The last stderr line of a failed command, for a one-line error."""
    lines = str(result.stderr or "").strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"

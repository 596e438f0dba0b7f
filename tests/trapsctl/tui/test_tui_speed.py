"""``trapsctl dashboard`` in a real pseudo-terminal: time to the first frame, a dead ESM, ``q``."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TRAPSCTL = str(Path(sys.executable).parent / "trapsctl")


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, as under SSH, so
    that closing the pty hangs the dashboard up (SIGHUP) even if the test fails half-way."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _read_until(fd: int, needle: bytes, deadline: float, seen: bytearray) -> bool:
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return False
            seen.extend(chunk)
            if needle in seen:
                return True
    return False


@pytest.mark.timeout(120)
def test_first_frame_and_quit_with_a_dead_esm(
    record_property: Callable[[str, object], None],
) -> None:
    """Printed with -s; the bound is loose (shared machines), the figures go in the report."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(
        os.environ,
        TERM="xterm-256color",
        TRAPSCTL_SERVER="http://127.0.0.1:9",  # nothing listens: connection refused
        TRAPSCTL_TOKEN="t",
        TEXTUAL_ANIMATIONS="none",
    )
    start = time.monotonic()
    process = subprocess.Popen(
        [TRAPSCTL, "dashboard"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        preexec_fn=_own_terminal,
    )
    os.close(secondary)
    seen = bytearray()
    try:
        assert _read_until(primary, b"Agents", start + 30, seen), bytes(seen[-2000:])
        first_frame = time.monotonic() - start
        assert _read_until(primary, b"unreachable", start + 30, seen), bytes(seen[-2000:])
        status_line = time.monotonic() - start
        os.write(primary, b"q")
        code = process.wait(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        os.close(primary)
    record_property("dashboard first frame (s)", round(first_frame, 3))
    record_property("dashboard 'ESM unreachable' shown (s)", round(status_line, 3))
    print(
        f"first frame: {first_frame * 1000:.0f} ms; unreachable shown: {status_line * 1000:.0f} ms"
    )
    assert code == 0
    assert first_frame < 20  # loose: shared machines; the figure is what matters

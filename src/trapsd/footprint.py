"""The agent's own footprint, reported on every check-in (target: 0.1 % CPU, 50 MB, 250 MB)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from trapsapi.wire import Footprint


def disk_bytes(path: Path) -> int:
    """Bytes used by the files under ``path`` (the state dir: outbox, policy, status…)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class FootprintMeter:
    """CPU is averaged since the previous measurement, as a share of the whole machine."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.process = psutil.Process()
        self._cpus = psutil.cpu_count() or 1
        self._last = (time.monotonic(), self._cpu_seconds())

    def _cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def measure(self) -> Footprint:
        now, cpu = time.monotonic(), self._cpu_seconds()
        wall = now - self._last[0]
        percent = 100.0 * (cpu - self._last[1]) / (wall * self._cpus) if wall > 0 else 0.0
        self._last = (now, cpu)
        return {
            "rss_bytes": int(self.process.memory_info().rss),
            "cpu_percent": round(max(percent, 0.0), 4),
            "disk_bytes": disk_bytes(self.state_dir),
        }

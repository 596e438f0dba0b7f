"""The ``kill_process`` action: kill a process (and its descendants) after checking that the
PID still names the same process (start time, name), so a reused PID is never killed."""

from __future__ import annotations

import os
from typing import Any

import psutil

START_TOLERANCE_S = 0.05


class KillRefused(Exception):
    pass


def kill(pid: int, start_time: float | None, name: str | None, tree: bool) -> dict[str, Any]:
    if pid <= 1 or pid == os.getpid():
        raise KillRefused(f"pid {pid}: refusing to kill init or the agent itself")
    try:
        process = psutil.Process(pid)
        started = process.create_time()
        actual_name = process.name()
    except psutil.NoSuchProcess:
        raise KillRefused(f"pid {pid}: no such process") from None
    if start_time is not None and abs(started - start_time) > START_TOLERANCE_S:
        raise KillRefused(
            f"pid {pid} was reused: it started at {started:.2f}, not {start_time:.2f}"
        )
    if name is not None and actual_name != name:
        raise KillRefused(f"pid {pid} is {actual_name!r}, not {name!r}")
    victims = [process]
    try:
        process.suspend()  # no new children while the tree is collected
        if tree:
            victims += process.children(recursive=True)
    except psutil.NoSuchProcess:
        pass
    for victim in reversed(victims):  # descendants first
        try:
            victim.kill()
        except psutil.NoSuchProcess:
            pass
    gone, alive = psutil.wait_procs(victims, timeout=5)
    zombies = [p for p in alive if _zombie(p)]  # dead; only their parent has not reaped them
    gone, alive = gone + zombies, [p for p in alive if p not in zombies]
    return {
        "pid": pid,
        "name": actual_name,
        "start_time": started,
        "killed": sorted(p.pid for p in gone),
        "survivors": sorted(p.pid for p in alive),
    }


def _zombie(process: psutil.Process) -> bool:
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True

#!/usr/bin/env python3
"""How fast ``trapsctl agents list -o json`` lists 1,000 agents, warm (goal: <= 250 ms);
TAB completion and the dashboard's first frame against the same ESM.

A real esmd (SQLite, served by ``esmd serve``) gets 1,000 agents inserted straight into its
database; then the installed ``trapsctl`` console script runs against it with TRAPSCTL_SERVER /
TRAPSCTL_TOKEN (the scripted path), twice to warm the page cache and write the .pyc files (even
when the caller's environment says PYTHONDONTWRITEBYTECODE), then ``--runs`` times. The
figure is the median wall time of a whole process run, start-up included; the best run and
the server's own share (the same request from an already-running Python) are shown with it.

TAB completion is timed as bash runs it (the generated completion's environment): a command
name, and an agent ID (which asks the ESM, then its one-minute cache). The dashboard is started
in a pseudo-terminal of 160x48: its first frame is the first output that draws the tab bar,
and "agents shown" the first one that draws an agent's hostname.

Run alone (``python bench/ctl_speed.py``) or from ``bench/run.py``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import secrets
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from localrun import Programs, describe, free_port, healthy
from payloads import checkin_body

from trapsapi.admin_client import AdminClient

GOAL_MS = 250.0
TRAPSCTL = str(Path(sys.executable).parent / "trapsctl")


def insert_agents(data_dir: Path, count: int) -> None:
    """``count`` agents with a realistic check-in (modules, footprint), in one transaction."""
    from esmd.config import Settings
    from esmd.db.engine import make_engine
    from esmd.db.tables import AGENTS

    now = datetime.now(UTC)
    module = checkin_body(0)["modules"][0]
    rows = [
        {
            "agent_id": str(uuid.uuid4()),
            "secret_hash": secrets.token_hex(32),
            "hostname": f"host-{n:05d}.example.org",
            "os": "linux",
            "os_version": "Debian 13",
            "agent_version": "0.1.0",
            "ips": [f"10.0.{n // 250}.{n % 250 + 1}"],
            "enrolled_at": now,
            "last_checkin_at": now,
            "modules": [module, {**module, "name": "exploit", "mechanism": "ptrace-watch"}],
            "footprint": {"rss_bytes": 24_000_000, "cpu_percent": 0.05, "disk_bytes": 1_000_000},
            "policy_version": 1,
            "outbox_depth": 0,
            "events_dropped": 0,
        }
        for n in range(count)
    ]
    engine = make_engine(Settings(data_dir=data_dir).url, pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(AGENTS.insert(), rows)
    finally:
        engine.dispose()


def _time_runs(command: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - start)
        if result.returncode:
            raise SystemExit(f"trapsctl failed: {result.stderr.strip()}")
    return times


def _complete(words: str, env: dict[str, str], runs: int) -> list[float]:
    """Times of ``runs`` completions of ``words`` (bash: COMP_WORDS, COMP_CWORD)."""
    parts = words.split(" ")
    complete = dict(
        env, COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1), _TRAPSCTL_COMPLETE="complete_bash"
    )
    return _time_runs([TRAPSCTL, *parts[1:2]], complete, runs)


def _dashboard_frames(env: dict[str, str], timeout: float = 20.0) -> tuple[float, float]:
    """Seconds from start to the first frame (the tab bar) and to the first agent drawn."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the dashboard on the pty
        os.execve(TRAPSCTL, [TRAPSCTL, "dashboard"], dict(env, TERM="xterm-256color"))
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    start = time.perf_counter()
    first = shown = 0.0
    seen = b""
    try:
        while not shown and time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
            now = time.perf_counter() - start
            if not first and b"Agents" in seen:
                first = now
            if b"host-0" in seen:
                shown = now
    finally:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        os.close(fd)
    if not (first and shown):
        raise SystemExit(f"the dashboard drew no agents within {timeout:.0f} s")
    return first, shown


def measure_ctl_speed(work: Path, agents: int = 1000, runs: int = 11) -> dict[str, Any]:
    password = secrets.token_urlsafe(16)
    data_dir = work / "ctl-esm"
    with Programs(work) as programs:
        init = programs.run(
            "esmd", "init", "--data-dir", str(data_dir), "--admin-user", "admin",
            "--admin-password-stdin", stdin=password + "\n",
        )  # fmt: skip
        if init.returncode:
            raise SystemExit(f"esmd init: {describe(init)}")
        insert_agents(data_dir, agents)
        port = free_port()
        programs.start("esmd", "serve", "--data-dir", str(data_dir), "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        programs.wait_for("esmd", lambda: healthy(url), timeout=30)
        admin = AdminClient(url)
        admin.login("admin", password)
        env = dict(os.environ, TRAPSCTL_SERVER=url, TRAPSCTL_TOKEN=admin.token or "")
        env.pop("TRAPSCTL_OUTPUT", None)
        # Warm means compiled: with PYTHONDONTWRITEBYTECODE (set in some shells and CI) every
        # module of an editable install is compiled again on every run (~30 ms), which no
        # installed trapsctl does.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        command = [TRAPSCTL, "agents", "list", "-o", "json", "--limit", str(agents)]
        listed = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        if len(json.loads(listed.stdout)) != agents:
            raise SystemExit("trapsctl did not list every agent")
        _time_runs(command, env, 2)  # warm: page cache, .pyc files, the server's caches
        times = _time_runs(command, env, runs)
        server = []
        for _ in range(runs):
            start = time.perf_counter()
            admin.list_agents(limit=agents)
            server.append(time.perf_counter() - start)
        bare = _time_runs([sys.executable, "-c", "pass"], env, runs)
        command_names = _complete("trapsctl ag", env, runs)
        env["XDG_CACHE_HOME"] = str(work / "ctl-cache")  # a cold agent cache for the first
        agent_ids = _complete("trapsctl agents show ", env, runs)
        frames = [_dashboard_frames(env) for _ in range(3)]
        admin.close()
    return {
        "agents": agents,
        "median_ms": round(statistics.median(times) * 1000, 1),
        "best_ms": round(min(times) * 1000, 1),
        "server_ms": round(statistics.median(server) * 1000, 1),
        "python_ms": round(statistics.median(bare) * 1000, 1),
        "goal_ms": GOAL_MS,
        "complete_command_ms": round(statistics.median(command_names) * 1000, 1),
        "complete_agent_first_ms": round(agent_ids[0] * 1000, 1),
        "complete_agent_cached_ms": round(statistics.median(agent_ids[1:]) * 1000, 1),
        "dashboard_first_frame_ms": round(statistics.median(f for f, _ in frames) * 1000),
        "dashboard_agents_ms": round(statistics.median(a for _, a in frames) * 1000),
    }


def report_line(figures: dict[str, Any]) -> str:
    met = "yes" if figures["median_ms"] <= figures["goal_ms"] else "no"
    return (
        f"\n`trapsctl agents list -o json` with {figures['agents']:,} agents, warm "
        f"(bench/ctl_speed.py): median {figures['median_ms']} ms, best {figures['best_ms']} ms "
        f"(of which the ESM's reply {figures['server_ms']} ms, bare `python -c pass` "
        f"{figures['python_ms']} ms); goal ≤ {figures['goal_ms']:.0f} ms: {met}.\n"
        f"TAB completion: a command name {figures['complete_command_ms']} ms; an agent ID "
        f"{figures['complete_agent_first_ms']} ms the first time (asks the ESM), "
        f"{figures['complete_agent_cached_ms']} ms from the cache. `trapsctl dashboard` in a "
        f"160x48 terminal: first frame {figures['dashboard_first_frame_ms']} ms, the first "
        f"page of agents drawn {figures['dashboard_agents_ms']} ms (median of 3).\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traps-ctl-bench-") as tmp:
        figures = measure_ctl_speed(Path(tmp), args.agents, args.runs)
    sys.stdout.write(report_line(figures).lstrip())
    sys.stdout.write(json.dumps(figures) + "\n")
    return 0 if figures["median_ms"] <= figures["goal_ms"] else 1


if __name__ == "__main__":
    sys.exit(main())

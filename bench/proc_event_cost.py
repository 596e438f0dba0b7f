"""What the behaviour engine's threads cost per process on this host, A/B between source trees.

Runs the behaviour engine alone (real proc connector, shipped default policy, no fanotify, no
server) from each ``--src`` tree in turn, interleaved ``--rounds`` times, while this process
spawns /bin/true at a fixed rate. Reports, per tree: CPU of each engine thread in µs per spawn
(from /proc/PID/task/TID/schedstat, nanoseconds) and in % of a core, the connector events it
handled, and the median wall time of a spawn + wait beside it against the same with no engine
(interleaved the same way). Needs root (CAP_NET_ADMIN). Other work on the host adds process
events too: the report gives the load average.

    python bench/proc_event_cost.py --src /work/main/src --src src --seconds 20 --rate 200
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ENGINE = """
import json, sys, threading, time
sys.path.insert(0, sys.argv[1])
from trapsd.behaviour.engine import BehaviourEngine
from trapsd.config import AgentSettings
from trapsd.policy import default_policy
engine = BehaviourEngine(AgentSettings(), default_policy(), lambda d: None)
engine.start()
time.sleep(1)
print(json.dumps({t.native_id: t.name for t in threading.enumerate()}), flush=True)
sys.stdin.readline()
print(json.dumps(engine.stats()), flush=True)
engine.stop()
"""


def thread_ns(pid: int) -> dict[int, int]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue
    return out


def churn(seconds: float, rate: float) -> list[float]:
    """posix_spawn + wait of /bin/true ``rate`` times a second; the wall time of each."""
    true = shutil.which("true") or "/bin/true"
    times: list[float] = []
    start = time.perf_counter()
    n = 0
    while (now := time.perf_counter()) - start < seconds:
        due = start + n / rate
        if now < due:
            time.sleep(due - now)
        began = time.perf_counter()
        os.waitpid(os.posix_spawn(true, [true], {}), 0)
        times.append(time.perf_counter() - began)
        n += 1
    return times


def with_engine(src: str, seconds: float, rate: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONOPTIMIZE": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-c", ENGINE, src],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        names = {int(k): v for k, v in json.loads(proc.stdout.readline()).items()}
        time.sleep(1)
        before, started = thread_ns(proc.pid), time.monotonic()
        times = churn(seconds, rate)
        after, elapsed = thread_ns(proc.pid), time.monotonic() - started
        proc.stdin.write("\n")
        proc.stdin.flush()
        stats = json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(10)
    used = {names.get(t, "other"): (after[t] - before.get(t, 0)) / 1e9 for t in after}
    return {"cpu_s": used, "spawns": len(times), "elapsed": elapsed, "times": times, **stats}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("proc_event_cost: needs root (the proc connector)")
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in args.src}
    bare: list[float] = []
    for _ in range(args.rounds):
        bare += churn(min(args.seconds, 5.0), args.rate)
        for src in args.src:
            results[src].append(with_engine(src, args.seconds, args.rate))
    base = statistics.median(bare)
    print(f"load average {os.getloadavg()}; no engine: spawn {1000 * base:.3f} ms median")
    for src, runs in results.items():
        spawns = sum(r["spawns"] for r in runs)
        elapsed = sum(r["elapsed"] for r in runs)
        threads: dict[str, float] = {}
        for r in runs:
            for name, cpu in r["cpu_s"].items():
                threads[name] = threads.get(name, 0.0) + cpu
        spawn = statistics.median([t for r in runs for t in r["times"]])
        per = ", ".join(
            f"{n} {1e6 * c / spawns:.1f} µs/spawn {100 * c / elapsed:.2f} %"
            for n, c in sorted(threads.items())
            if c
        )
        events = sum(r.get("events", 0) for r in runs)
        print(
            f"{src}: {spawns} spawns, {events} connector events; {per}; "
            f"spawn {1000 * spawn:.3f} ms median ({spawn / base:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

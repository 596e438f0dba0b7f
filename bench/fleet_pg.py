"""The PostgreSQL fleet run of docs/scaling.md: two `esmd serve` on one fresh database, a
simulated fleet (bench/sim.py, its own process or processes) checking in every 60 s, and
what the machine did meanwhile.

    python bench/fleet_pg.py --agents 100000 --duration 300 [--processes 2] [--sources 16]
        [--env ESMD_LISTEN_BACKLOG=1024] [--restart-at 180]

``--restart-at S`` stops both esmd S seconds into the fleet's run and starts them again on
the same ports (a restart of the whole server side under an established fleet: the
agents' rows are at their fixed point, unlike the fresh fleet's first minutes).

Prints one JSON line: the simulator's figures (percentiles by minute, errors, its loop lag),
the CPU share of each esmd, of the simulator and of PostgreSQL by minute, each esmd's
``/healthz`` latency on a kept-alive connection (its event loop's lag, seen from outside),
the kernel's TCP counters (``nstat``) over the run, sockets in TIME_WAIT by minute, and
esmd's ``/metrics`` counters. The database (``bench_sim_…``) is dropped afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import psutil
from loadgen import percentile
from localrun import Programs, healthy
from pg import ADMIN_URL, fresh_database
from run import another_esmd, database_args, running_esm
from sim import bulk_enroll
from wake_sim import raise_fd_limit

COUNTERS = [
    "TcpExtListenOverflows",
    "TcpExtListenDrops",
    "TcpExtTCPTimeWaitOverflow",
    "TcpExtTCPReqQFullDrop",
    "TcpExtSyncookiesSent",
    "TcpExtTCPSynRetrans",
    "TcpRetransSegs",
    "TcpActiveOpens",
    "TcpAttemptFails",
    "TcpExtTW",
    "TcpExtTWRecycled",
]
METRICS = ("esmd_agent_checkins_total", "esmd_overloaded_total", "esmd_http_requests_total")


def nstat() -> dict[str, int]:
    out = subprocess.run(
        ["nstat", "-az", *COUNTERS], capture_output=True, text=True, check=True
    ).stdout
    values = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in COUNTERS:
            values[parts[0]] = int(parts[1])
    return values


def time_wait() -> int:
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("tw") + 1])
    return 0


@contextmanager
def bench_database() -> Iterator[str]:
    with fresh_database("bench_sim_") as url:
        if url is None:
            raise SystemExit(f"no PostgreSQL answers at {ADMIN_URL}")
        yield url


class Watch(threading.Thread):
    """Every 10 s: CPU of each watched process (and children) and of the whole machine (all
    cores: the rest is other work), TIME_WAIT; every 0.2 s the
    latency of ``/healthz`` on one kept-alive connection per esmd."""

    def __init__(self, groups: dict[str, list[psutil.Process]], ports: list[int]) -> None:
        super().__init__(daemon=True)
        self.groups, self.ports = groups, ports
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.samples: list[tuple[float, dict[str, float], int]] = []
        self.health: dict[int, list[tuple[int, float]]] = {port: [] for port in ports}
        self.last: dict[tuple[str, int], float] = {}

    def cpu(self) -> dict[str, float]:
        """CPU seconds of each group: its root processes with their reaped children, and
        their live descendants (a root that ended keeps its last figure)."""
        totals = {}
        for name, processes in self.groups.items():
            total = 0.0
            for process in processes:
                key = (name, process.pid)
                try:
                    times = process.cpu_times()
                    own = times.user + times.system + times.children_user + times.children_system
                    for member in process.children(recursive=True):
                        try:
                            times = member.cpu_times()
                            own += times.user + times.system
                        except psutil.Error:
                            pass
                    self.last[key] = own
                except psutil.Error:
                    pass
                total += self.last.get(key, 0.0)
            totals[name] = total
        machine = psutil.cpu_times()
        totals["machine"] = machine.user + machine.nice + machine.system + machine.irq
        totals["machine"] += machine.softirq
        totals["steal"] = machine.steal
        return totals

    def run(self) -> None:
        connections = {port: http.client.HTTPConnection("127.0.0.1", port) for port in self.ports}
        next_sample = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= next_sample:
                self.samples.append((now, self.cpu(), time_wait()))
                next_sample = now + 10
            for port, connection in connections.items():
                sent = time.perf_counter()
                try:
                    connection.request("GET", "/healthz")
                    connection.getresponse().read()
                except (OSError, http.client.HTTPException):
                    connection.close()
                    continue
                minute = int((time.monotonic() - self.started) // 60)
                self.health[port].append((minute, (time.perf_counter() - sent) * 1000))
            self.stop.wait(0.2)
        self.samples.append((time.monotonic(), self.cpu(), time_wait()))

    def report(self) -> dict[str, Any]:
        by_minute: dict[int, dict[str, Any]] = {}
        for (t0, cpu0, _), (t1, cpu1, tw) in zip(self.samples, self.samples[1:], strict=False):
            minute = int((t0 - self.started) // 60)
            row = by_minute.setdefault(minute, {"seconds": 0.0, "cpu_s": {}, "time_wait": 0})
            row["seconds"] += t1 - t0
            row["time_wait"] = max(row["time_wait"], tw)
            for name in cpu1:
                row["cpu_s"][name] = row["cpu_s"].get(name, 0.0) + cpu1[name] - cpu0.get(name, 0)
        cpu = [
            {
                "minute": minute,
                "time_wait_max": row["time_wait"],
                **{k: round(v / row["seconds"], 2) for k, v in row["cpu_s"].items()},
            }
            for minute, row in sorted(by_minute.items())
        ]
        health = {}
        for port, values in self.health.items():
            minutes = sorted({m for m, _ in values})
            health[str(port)] = [
                {
                    "minute": m,
                    "p99_ms": round(percentile([v for k, v in values if k == m], 0.99), 1),
                    "max_ms": round(max(v for k, v in values if k == m), 1),
                }
                for m in minutes
            ]
        return {"cpu_share_by_minute": cpu, "healthz_by_minute": health}


def restart_both(
    programs: Programs,
    db: list[str],
    ports: list[int],
    groups: dict[str, list[psutil.Process]],
    out: dict[str, Any],
) -> None:
    """Stop both esmd (SIGTERM: each flushes what it holds), then start both again on the
    same ports; ``out`` gets when (UTC) and how long until both answered again."""
    began = time.monotonic()
    out["at_utc"] = time.strftime("%H:%M:%S", time.gmtime())
    serving = [p for p in programs.processes if p.poll() is None and "serve" in p.args]
    for process in serving:
        process.terminate()
    for process in serving:
        process.wait(timeout=60)
        programs.processes.remove(process)  # stopped on purpose: not a failure
    for index, port in enumerate(ports):
        process = programs.start("esmd", "serve", *db, "--port", str(port))
        groups[f"esmd_{index + 1}"].append(psutil.Process(process.pid))
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    programs.wait_for("both esmd again", lambda: all(healthy(u) for u in urls), timeout=60)
    out["down_s"] = round(time.monotonic() - began, 2)


def scrape(port: int) -> dict[str, float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in METRICS:
            key = name if "checkins" in name or "overloaded" in name else line.rsplit(" ", 1)[0]
            if name == "esmd_http_requests_total" and 'status="429"' not in line:
                continue
            totals[key] = totals.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def run(args: argparse.Namespace) -> dict[str, Any]:
    env = dict(os.environ)
    for pair in args.env:
        key, _, value = pair.partition("=")
        env[key] = value
    raise_fd_limit(65_536)
    with tempfile.TemporaryDirectory(prefix="traps-fleet-") as tmp, bench_database() as url:
        work = Path(tmp)
        with running_esm(work, "esm", url, env) as (first, _, programs):
            second, second_pid = another_esmd(programs, work, "esm", url)
            ports = [first, second]
            pids = [programs.processes[0].pid, second_pid]
            store = work / "fleet.json"
            bulk_enroll(url, args.agents, store)
            sim = [sys.executable, str(Path(__file__).parent / "sim.py"), "--token", "unused"]
            sim += [f"--server=http://127.0.0.1:{p}" for p in ports]
            sim += ["--database-url", url, "--store", str(store), "--agents", str(args.agents)]
            sim += ["--duration", str(args.duration), "--interval", str(args.interval)]
            sim += ["--processes", str(args.processes), "--sources", str(args.sources)]
            postgres = [
                p
                for p in psutil.process_iter(["name"])
                if p.info["name"] == "postgres" and p.ppid() == 1
            ]  # the postmaster: its backends are its children
            before, load = nstat(), os.getloadavg()[0]
            simulator = subprocess.Popen(sim, stdout=subprocess.PIPE, text=True)
            groups = {
                "esmd_1": [psutil.Process(pids[0])],
                "esmd_2": [psutil.Process(pids[1])],
                "simulator": [psutil.Process(simulator.pid)],
                "postgres": postgres,
            }
            watch = Watch(groups, ports)
            watch.start()
            restart: dict[str, Any] = {}
            restarter = None
            if args.restart_at:
                db = database_args(work, "esm", url)
                restarter = threading.Timer(
                    args.restart_at, restart_both, (programs, db, ports, groups, restart)
                )
                restarter.start()
            out, _ = simulator.communicate()
            if restarter is not None:
                restarter.join()
            watch.stop.set()
            watch.join()
            after = nstat()
            ss = subprocess.run(["ss", "-s"], capture_output=True, text=True).stdout
            metrics = {str(p): scrape(p) for p in ports}
    return {
        "label": args.label,
        "env": args.env,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load": [round(load, 1), round(os.getloadavg()[0], 1)],
        "sim": json.loads(out) if out.strip() else None,
        **watch.report(),
        "nstat": {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS},
        "ss_summary": ss.splitlines()[:2],
        "restart": restart,
        "metrics": metrics,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--sources", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for both esmd")
    parser.add_argument(
        "--restart-at", type=float, default=0.0, help="restart both esmd after S seconds"
    )
    parser.add_argument("--label", default="")
    parser.add_argument("--out", help="append the JSON line to this file too")
    args = parser.parse_args()
    result = run(args)
    line = json.dumps(result)
    sys.stdout.write(line + "\n")
    if args.out:
        with open(args.out, "a") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

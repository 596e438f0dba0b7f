"""`make bench`: measure Traps against this machine's own limits and write docs/benchmarks.md.

Figures are ratios taken in one run (absolute numbers drift between runs on a shared VM):
- esmd check-ins/s (SQLite) / a bare uvicorn endpoint's requests/s, same generator, same body size;
- esmd events/s ingested over HTTP / a raw batched sqlite3 insert of the same rows;
- trapsd RSS after start (all modules on) / the 30 MB budget, and against bare `python -c`;
- the same on PostgreSQL, the 20,000-agent fleet, wake-ups of 10,000 long-polling agents
  (one esmd on SQLite, two on PostgreSQL: an action for one, one for all, a policy change);
- the agent (bench/agent_bench.py): install size, exec latency with/without it, idle CPU
  over 10 minutes (measured beside the server benchmarks), blocked exec to visible event;
  trapsctl agents list with 1,000 agents (bench/ctl_speed.py);
- large tables (bench/big_tables.py): the admin API over 1,000,000 generated events.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import agent_bench
import agent_report
import big_tables
from ctl_speed import measure_ctl_speed, report_line
from loadgen import Result, build_request, run_load
from localrun import Programs, describe, free_port, healthy
from payloads import checkin_body, event
from pg import fresh_database, raw_insert_rate
from sim import simulate
from wake_sim import measure_wake as simulate_wake
from wake_sim import raise_fd_limit

from trapsapi import routes
from trapsapi.admin_client import AdminClient
from trapsapi.agent_client import enroll

ROOT = Path(__file__).resolve().parent.parent
AGENT_RSS_GOAL_MB = 30.0
CHECKIN_RATIO_GOAL = 0.40
INGEST_RATIO_GOAL = 0.25
FLEET_P99_GOAL_MS = 100.0
WAKE_P95_GOAL_MS = 2000.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def database_args(work: Path, name: str, database_url: str | None = None) -> list[str]:
    """The ``esmd`` arguments naming the ESM of :func:`running_esm` (SQLite under
    work/name, or ``database_url``)."""
    db = ["--data-dir", str(work / name)]
    return [*db, "--database-url", database_url] if database_url else db


@contextmanager
def running_esm(
    work: Path, name: str, database_url: str | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[int, AdminClient, Programs]]:
    """A fresh ESM (SQLite under work/name, or ``database_url``), served (in ``env``, if
    given); yields (port, admin client, programs)."""
    password = secrets.token_urlsafe(16)
    db = database_args(work, name, database_url)
    with Programs(work, env) as programs:
        init = programs.run(
            "esmd",
            "init",
            *db,
            "--admin-user",
            "admin",
            "--admin-password-stdin",
            stdin=password + "\n",
        )
        if init.returncode:
            raise SystemExit(f"esmd init: {describe(init)}")
        port = free_port()
        programs.start("esmd", "serve", *db, "--port", str(port))
        programs.wait_for("esmd", lambda: healthy(f"http://127.0.0.1:{port}"), timeout=30)
        admin = AdminClient(f"http://127.0.0.1:{port}")
        admin.login("admin", password)
        yield port, admin, programs


def measure_esmd(
    work: Path,
    agents: int,
    seconds: float,
    database_url: str | None = None,
    telemetry_variants: int = 1,
) -> dict[str, Result]:
    """Check-ins and event batches; with ``telemetry_variants`` > 1 each agent's check-ins
    cycle through that many outbox depths (real agents' footprint moves between check-ins:
    esmd then validates each body, where a byte-identical repeat skips validation)."""
    with running_esm(work, "esm-pg" if database_url else "esm", database_url) as (
        port,
        admin,
        _,
    ):
        url = f"http://127.0.0.1:{port}"
        token = admin.create_token(label="bench", max_uses=agents)["token"]
        creds = []
        for n in range(agents):
            reply = enroll(
                [url],
                {
                    "token": token,
                    "hostname": f"bench-{n:05d}",
                    "os": "linux",
                    "os_version": "bench",
                    "agent_version": "0.1.0",
                },
            )
            creds.append((n, f"Bearer {reply['agent_id']}.{reply['agent_secret']}"))
        checkins = [
            build_request(
                "127.0.0.1",
                port,
                "POST",
                routes.AGENT_CHECKIN,
                checkin_body(n) | {"outbox_depth": variant},
                {"Authorization": auth},
            )
            for variant in range(telemetry_variants)
            for n, auth in creds
        ]
        run_load("127.0.0.1", port, checkins, seconds=1.5)
        results = {"checkin": run_load("127.0.0.1", port, checkins, seconds=seconds)}
        batches = [
            build_request(
                "127.0.0.1",
                port,
                "POST",
                routes.AGENT_EVENTS,
                {"events": [event(b * 100 + i) for i in range(100)]},
                {"Authorization": creds[b % len(creds)][1]},
            )
            for b in range(300)
        ]
        results["ingest"] = run_load("127.0.0.1", port, batches, connections=8, seconds=seconds)
    return results


def measure_bare(work: Path, seconds: float) -> Result:
    port = free_port()
    with Programs(work) as programs:
        programs.start("python", str(Path(__file__).parent / "bare_app.py"), str(port))
        programs.wait_for("the bare app", lambda: healthy(f"http://127.0.0.1:{port}", "/"))
        requests = [build_request("127.0.0.1", port, "POST", "/", checkin_body(0), {})]
        run_load("127.0.0.1", port, requests, seconds=1.5)
        return run_load("127.0.0.1", port, requests, seconds=seconds)


def measure_raw_insert(work: Path, rows: int = 50_000) -> float:
    """Rows/s of executemany in 100-row transactions into SQLite WAL: the database's limit."""
    db = sqlite3.connect(work / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE e (agent_id TEXT, id TEXT, time TEXT, module TEXT, severity TEXT,"
        " action TEXT, process_path TEXT, sha256 TEXT, pid INT, ppid INT, parent_path TEXT,"
        " user TEXT, uid INT, cmdline TEXT, details TEXT, PRIMARY KEY (agent_id, id))"
    )
    data = []
    for n in range(rows):
        values = list(event(n).values())
        values[-1] = "{}"  # details, as JSON text
        data.append(("agent", *values))
    started = time.perf_counter()
    for start in range(0, rows, 100):
        db.execute("BEGIN")
        db.executemany(
            f"INSERT OR IGNORE INTO e VALUES ({','.join('?' * 15)})", data[start : start + 100]
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return rows / elapsed


def measure_fleet(work: Path, agents: int, seconds: float) -> dict[str, Any]:
    """Simulated agents checking in every 60 s with jitter, on a fresh connection each."""
    with running_esm(work, "esm-fleet") as (port, admin, _):
        token = admin.create_token(label="fleet", max_uses=agents)["token"]
        return simulate(
            f"http://127.0.0.1:{port}", token, agents, 60.0, seconds, 0.0, work / "fleet.json"
        )


def another_esmd(programs: Programs, work: Path, name: str, database_url: str) -> tuple[int, int]:
    """A second ``esmd serve`` on the PostgreSQL database of :func:`running_esm`, healthy:
    (its port, its pid)."""
    port = free_port()
    db = database_args(work, name, database_url)
    pid = programs.start("esmd", "serve", *db, "--port", str(port)).pid
    programs.wait_for("esmd 2", lambda: healthy(f"http://127.0.0.1:{port}"), timeout=30)
    return port, pid


def measure_wake(work: Path, agents: int, database_url: str | None = None) -> dict[str, Any]:
    """Agents holding long-polls: one esmd on SQLite, or two on PostgreSQL (agents split over
    both, every change made through the first): one-agent actions and two broadcasts."""
    name = "esm-wake-pg" if database_url else "esm-wake"
    with running_esm(work, name, database_url) as (port, admin, programs):
        servers = [f"http://127.0.0.1:{port}"]
        pids = [p.pid for p in programs.processes if p.poll() is None]
        if database_url:
            second, pid = another_esmd(programs, work, name, database_url)
            pids.append(pid)
            servers.append(f"http://127.0.0.1:{second}")
        token = admin.create_token(label="wake", max_uses=agents)["token"]
        url = database_url or f"sqlite:///{work / name / 'esm.db'}"
        result = simulate_wake(
            servers, token, agents, work / f"{name}.json", admin, 30, pids, database_url=url
        )
        result["database"] = "PostgreSQL" if database_url else "SQLite"
        return result


def measure_agent_rss(work: Path) -> tuple[float, float]:
    """RSS of `trapsd run` (all modules on) 3 s after its first check-in; and bare python's."""
    with running_esm(work, "esm-agent") as (port, admin, programs):
        token = admin.create_token(label="rss")["token"]
        state = str(work / "agent")
        enrolled = programs.run(
            "trapsd",
            "enroll",
            "--server",
            f"http://127.0.0.1:{port}",
            "--token-file",
            "-",
            "--state-dir",
            state,
            stdin=token + "\n",
        )
        if enrolled.returncode:
            raise SystemExit(f"trapsd enroll: {describe(enrolled)}")
        agent = agent_bench.start_agent(programs, "--state-dir", state)
        programs.wait_for("the agent", lambda: admin.list_agents(health="connected")["data"])
        time.sleep(3)
        agent_rss = rss_mb(agent.pid)
    bare = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    time.sleep(1)
    bare_rss = rss_mb(bare.pid)
    bare.kill()
    bare.wait()
    return agent_rss, bare_rss


def report(figures: dict[str, Any]) -> str:
    f = figures
    lines = [
        "# Benchmarks",
        "",
        f"Latest run: {f['date']} on {f['machine']} (`make bench`; each figure is from one run,",
        "ratios are against limits measured in the same run, on the same machine).",
        "",
        "| what | measured | limit on this machine | ratio | goal | met |",
        "|---|---|---|---|---|---|",
        _row(
            "esmd check-ins/s, SQLite, 1 process",
            f["checkin_rate"],
            f["bare_rate"],
            "bare uvicorn req/s",
            CHECKIN_RATIO_GOAL,
            higher=True,
        ),
        _row(
            "esmd events/s ingested over HTTP (100/batch), SQLite",
            f["ingest_rate"],
            f["raw_insert_rate"],
            "raw sqlite3 rows/s",
            INGEST_RATIO_GOAL,
            higher=True,
        ),
        *_postgres_rows(f),
        f"| trapsd RSS after start, all modules on | {f['agent_rss']:.1f} MB | budget "
        f"{AGENT_RSS_GOAL_MB:.0f} MB (bare python {f['bare_rss']:.1f} MB) | "
        f"{f['agent_rss'] / AGENT_RSS_GOAL_MB:.2f} | ≤ 1.00 | "
        f"{'yes' if f['agent_rss'] <= AGENT_RSS_GOAL_MB else 'no'} |",
        *(agent_report.report_lines(f["agent_bench"]) if f.get("agent_bench") else []),
        "",
        *_idle_lines(f.get("agent_bench", {}).get("idle")),
        f"Check-in latency: p50 {f['checkin_p50']:.1f} ms, p99 {f['checkin_p99']:.1f} ms "
        f"({f['checkin_errors']} errors) with 32 connections and {f['agents']} enrolled agents.",
        *_fleet_lines(f["fleet"]),
        *[line for wake in f.get("wake") or [] for line in _wake_lines(wake)],
        f"Machine load while measuring (1-minute load average, 2 cores; other helpers' test "
        f"runs share this VM): {f.get('load', '?')}.",
        "",
        "The load generator (bench/loadgen.py) shares the 2 cores with the server, so absolute",
        "rates are lower bounds; the ratios compare like with like.",
        "",
    ]
    return "\n".join(lines)


def _idle_lines(idle: dict[str, Any] | None) -> list[str]:
    if not idle or "idle_cpu_percent" not in idle:
        return []
    return [
        agent_report.idle_thread_text(idle) + " The window ran beside the server benchmarks,",
        "which exec nothing per request; every exec and fork on the host is work for the agent,",
        "so the figure is an upper bound of its cost on a quiet host (see the counts above).",
        "",
    ]


def _fleet_lines(fleet: dict[str, Any] | None) -> list[str]:
    if not fleet:
        return []
    met = "met" if fleet["p99_ms"] < FLEET_P99_GOAL_MS and not fleet["errors"] else "NOT met"
    return [
        "",
        f"Simulated fleet (bench/sim.py): {fleet['agents']:,} agents checking in every "
        f"{fleet['interval_s']:.0f} s with jitter, a new connection each, one esmd on SQLite: "
        f"{fleet['checkins_per_s']}/s, p50 {fleet['p50_ms']} ms, p95 {fleet['p95_ms']} ms, "
        f"p99 {fleet['p99_ms']} ms, errors {fleet['errors'] or 0} "
        f"(goal p99 < {FLEET_P99_GOAL_MS} ms: {met}).",
        "",
    ]


def _postgres_rows(f: dict[str, Any]) -> list[str]:
    if not f.get("pg_checkin_rate"):
        return ["| esmd on PostgreSQL | not measured (no server at 127.0.0.1:5432) | | | | |"]
    return [
        _row(
            "esmd check-ins/s, PostgreSQL, 1 process",
            f["pg_checkin_rate"],
            f["bare_rate"],
            "bare uvicorn req/s",
            CHECKIN_RATIO_GOAL,
            higher=True,
        ),
        _row(
            "esmd events/s ingested over HTTP (100/batch), PostgreSQL",
            f["pg_ingest_rate"],
            f["pg_raw_insert_rate"],
            "raw psycopg rows/s",
            INGEST_RATIO_GOAL,
            higher=True,
        ),
    ]


def _wake_lines(wake: dict[str, Any]) -> list[str]:
    def line(what: str, key: str) -> str:
        met = "met" if wake[f"{key}_p95_ms"] < WAKE_P95_GOAL_MS else "NOT met"
        cpu = wake.get(f"{key}_server_cpu_s")
        return (
            f"- {what} ({wake[f'{key}_delivered']:,} of {wake[f'{key}_expected']:,} delivered): "
            f"p50 {wake[f'{key}_p50_ms']} ms, p95 {wake[f'{key}_p95_ms']} ms, max "
            f"{wake[f'{key}_max_ms']} ms (goal p95 < {WAKE_P95_GOAL_MS:.0f} ms: {met})"
            + (f"; esmd CPU {cpu} s" if cpu else "")
            + ";"
        )

    where = (
        "one esmd on SQLite"
        if wake["servers"] == 1
        else f"{wake['servers']} esmd on PostgreSQL (agents split over both, changes made "
        "through the first)"
    )
    return [
        f"Wake channel (bench/wake_sim.py), {wake['held']:,} of {wake['agents']:,} simulated "
        f"agents holding a long-poll on {where}; delivery = from the admin's request until "
        "the long-poll reply carrying the news reached the agent:",
        "",
        line("an action for one agent, one at a time", "agent"),
        line("one action for every agent (broadcast)", "action"),
        line("a policy change for every agent", "policy"),
        f"- errors: {wake['errors'] or 0}; all polls held {wake['seconds_to_hold_all']} s "
        f"after they started opening; confirming check-ins meanwhile: "
        f"{wake['confirm_checkins_meanwhile']}; simulator CPU {wake['simulator_cpu_s']} s.",
        "",
    ]


def _row(name: str, value: float, limit: float, limit_name: str, goal: float, higher: bool) -> str:
    ratio = value / limit if limit else 0.0
    met = ratio >= goal if higher else ratio <= goal
    return (
        f"| {name} | {value:,.0f}/s | {limit:,.0f}/s ({limit_name}) | {ratio:.2f} | "
        f"≥ {goal:.2f} | {'yes' if met else 'no'} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--fleet", type=int, default=20_000, help="simulated agents (0: skip)")
    parser.add_argument("--fleet-seconds", type=float, default=120.0)
    parser.add_argument("--wake", type=int, default=10_000, help="long-polling agents (0: skip)")
    parser.add_argument(
        "--idle-seconds", type=float, default=600.0, help="agent idle CPU window (0: skip)"
    )
    parser.add_argument(
        "--big-events", type=int, default=1_000_000, help="events for the large-table run (0: skip)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = parser.parse_args()
    raise_fd_limit(4 * max(args.wake, args.fleet) + 1024)  # esmd inherits it: a socket per agent
    with tempfile.TemporaryDirectory(prefix="traps-bench-") as tmp:
        work = Path(tmp)
        loads = [os.getloadavg()[0]]
        # The agent's idle window (10 minutes) runs beside the server benchmarks: they run in
        # processes started once (esmd, PostgreSQL) and exec nothing per request, and the
        # agent counts the execs and forks it handled meanwhile (docs/benchmarks.md).
        window = (
            agent_bench.idle_agent(work, args.idle_seconds)
            if args.idle_seconds
            else contextlib.nullcontext(dict)
        )
        with window as idle_figures:
            esmd = measure_esmd(work, args.agents, args.seconds)
            bare = measure_bare(work, args.seconds)
            raw = measure_raw_insert(work)
            pg: dict[str, Any] = {}
            with fresh_database() as pg_url:
                if pg_url:
                    pg_esmd = measure_esmd(work, args.agents, args.seconds, pg_url)
                    pg["pg_checkin_rate"] = pg_esmd["checkin"].rate
                    pg["pg_checkin_p99"] = pg_esmd["checkin"].percentile(0.99)
                    pg["pg_ingest_rate"] = pg_esmd["ingest"].rate * 100
                    pg["pg_raw_insert_rate"] = raw_insert_rate(pg_url)
            loads.append(os.getloadavg()[0])
            wake: list[dict[str, Any]] = []
            if args.wake:
                wake.append(measure_wake(work, args.wake))
                with fresh_database() as pg_url:
                    if pg_url:
                        wake.append(measure_wake(work, args.wake, pg_url))
            fleet = measure_fleet(work, args.fleet, args.fleet_seconds) if args.fleet else None
            big = big_tables.measure(work, args.big_events) if args.big_events else None
            loads.append(os.getloadavg()[0])
            idle = idle_figures()  # waits for the end of the window
        if idle:
            idle["during"] = " (beside the server benchmarks)"
        agent_rss, bare_rss = measure_agent_rss(work)  # no other agent runs from here on
        ctl = measure_ctl_speed(work)
        agent = agent_bench.measure(work, 0.0)
        loads.append(os.getloadavg()[0])
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"kernel {platform.release()}, {'root' if os.geteuid() == 0 else 'not root'}",
        "agents": args.agents,
        "checkin_rate": esmd["checkin"].rate,
        "checkin_p50": esmd["checkin"].percentile(0.5),
        "checkin_p99": esmd["checkin"].percentile(0.99),
        "checkin_errors": esmd["checkin"].errors + esmd["ingest"].errors,
        "bare_rate": bare.rate,
        "ingest_rate": esmd["ingest"].rate * 100,
        "raw_insert_rate": raw,
        "agent_rss": agent_rss,
        "bare_rss": bare_rss,
        "fleet": fleet,
        "wake": wake,
        "load": ", ".join(f"{x:.1f}" for x in loads),
        "agent_bench": {**agent, "idle": idle},
        **pg,
    }
    text = report(figures)
    figures["ctl_agents_list"] = ctl
    text += report_line(ctl)
    if big is not None:
        figures["big_tables"] = big
        text += "\n" + "\n".join(big_tables.report_lines(big)) + "\n"
    sys.stdout.write(text)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    if not args.no_write:
        (ROOT / "docs" / "benchmarks.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Large tables stay fast: the admin API over 10 million events on PostgreSQL.

Creates a scratch database, lets ``esmd init`` build the schema, fills ``events`` with
generated rows inside PostgreSQL (``generate_series``: the load takes minutes, not hours),
serves it with ``esmd serve``, and times every list filter's first page, page 1,000 by cursor
and by offset, the dashboard counts and a retention pass (the plans PostgreSQL picks too).
Run alone: ``python bench/big_tables.py --events 10000000``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import big_tables_sqlite
from localrun import Programs, describe, free_port, healthy

from trapsapi.admin_client import AdminClient

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DATABASE = "traps_bench_big"
PAGE_GOAL_MS = 200.0
AGENTS = 1000
PASSWORD = "bench password 12345"

_FILL_AGENTS = """
INSERT INTO agents (agent_id, secret_hash, hostname, os, os_version, agent_version, ips,
                    enrolled_at, modules, outbox_depth, events_dropped, issues)
SELECT md5(i::text)::uuid::text, repeat('0', 64), 'host-' || i, 'linux', '6.1', '0.1.0', '[]',
       now(), '[]', 0, 0, '[]'
FROM generate_series(1, %(agents)s) AS i
"""
# Times spread over 30 days, newest now; severities and modules skewed like a real fleet.
_FILL_EVENTS = """
INSERT INTO events (id, agent_id, hostname, time, received_at, module, severity, action,
                    process_path, sha256, pid, ppid, parent_path, "user", uid, cmdline,
                    details, status, comment)
SELECT md5('e' || i::text)::uuid,
       md5((1 + i %% %(agents)s)::text)::uuid::text,
       'host-' || (1 + i %% %(agents)s),
       now() - make_interval(secs => (%(events)s - i) * (2592000.0 / %(events)s)),
       now() - make_interval(secs => (%(events)s - i) * (2592000.0 / %(events)s)),
       (ARRAY['malware','malware','restrictions','child_process','reverse_shell'])[1 + i %% 5],
       (ARRAY['low','medium','high','high','critical','informational'])[1 + (i / 7) %% 6],
       (ARRAY['prevented','killed','notified'])[1 + i %% 3],
       '/tmp/sample-' || (i %% 5000), md5('h' || (i %% 20000)::text) || md5('x'),
       i %% 60000, 1, '/bin/bash', 'root', 0, '/tmp/sample --run', '{}',
       CASE WHEN i %% 1000 = 0 THEN 'in_progress' ELSE 'new' END, ''
FROM generate_series(1, %(events)s) AS i
"""


def _admin_sql(statement: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
        c.execute(statement)


def fill(work: Path, url: str, events: int) -> dict[str, float]:
    """Schema by esmd init, then agents and events generated inside PostgreSQL."""
    import psycopg

    from esmd.config import Settings
    from esmd.setup import initialise

    initialise(Settings(data_dir=work / "esm", database_url=url), "admin", PASSWORD)
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    started = time.monotonic()
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("SET maintenance_work_mem = '1GB'")
        # A bulk load: secondary indexes are rebuilt once at the end, FK checks skipped
        # (the generated agent IDs exist), as a restore would do it.
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        connection.execute("ALTER TABLE events DISABLE TRIGGER ALL")
        connection.execute(_FILL_AGENTS, {"agents": AGENTS})
        connection.execute(_FILL_EVENTS, {"agents": AGENTS, "events": events})
        connection.execute("ALTER TABLE events ENABLE TRIGGER ALL")
        for _, definition in indexes:
            connection.execute(definition)
        loaded = time.monotonic() - started
        connection.execute("VACUUM ANALYZE events")
        connection.execute("VACUUM ANALYZE agents")
    return {"load_s": loaded, "rows_per_s": events / loaded}


def timed(call: Callable[[], Any], runs: int = 5) -> float:
    """Median milliseconds of ``runs`` calls (after one warm-up)."""
    call()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(1000 * (time.perf_counter() - started))
    return statistics.median(samples)


DEEP = 1000  # page number of the deep pages (100 rows a page: 99,900 rows in)
EXPLAINED = {
    "newest page": "",
    "severity ≥ critical": "severity IN ('critical')",
    "one module": "module = 'reverse_shell'",
    "one agent": "agent_id = 'c4ca4238-a0b9-2382-0dcc-509a6f75849b'",
    "triage status (rare)": "status = 'in_progress'",
    "one file (sha256)": "sha256 = md5('h1') || md5('x')",
    "cursor deep page": "time <= '2026-11-28' AND (time < '2026-11-28' OR seq < 5)",
}


def explain(url: str) -> dict[str, str]:
    """The plan PostgreSQL picks for each filter's first page (first line of each node)."""
    import psycopg

    plans = {}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        for name, where in EXPLAINED.items():
            clause = f"WHERE {where}" if where else ""
            rows = connection.execute(
                f"EXPLAIN SELECT * FROM events {clause} ORDER BY time DESC, seq DESC LIMIT 101"
            ).fetchall()
            nodes = [r[0].strip().lstrip("-> ").split("  (")[0] for r in rows]
            plans[name] = " / ".join(n for n in nodes if n and not n.startswith(("Sort Key",)))
    return plans


def exact_count_ms(url: str) -> float:
    """What every list page used to cost before counts were capped: COUNT(*) of all events."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        return timed(lambda: connection.execute("SELECT count(*) FROM events").fetchone(), 3)


def measure_api(work: Path, url: str, events: int) -> dict[str, Any]:
    agent_id = "c4ca4238-a0b9-2382-0dcc-509a6f75849b"  # md5('1') as a UUID: host-1
    sha256 = hashlib.md5(b"h1").hexdigest() + hashlib.md5(b"x").hexdigest()
    with Programs(work, env={**os.environ, "ESMD_DATABASE_URL": url}) as programs:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        programs.start("esmd", "serve", "--port", str(port), "--data-dir", str(work / "esm"))
        programs.wait_for("esmd", lambda: healthy(base), timeout=60)
        admin = AdminClient(base, timeout=300)
        admin.login("admin", PASSWORD)
        deep = (DEEP - 1) * 100
        cursor = admin.list_events(limit=100, offset=deep - 100)["next_cursor"]
        critical = admin.list_events(severity="critical", limit=100, offset=deep - 100)
        queries: dict[str, Callable[[], Any]] = {
            "newest page": lambda: admin.list_events(limit=100),
            "severity ≥ critical": lambda: admin.list_events(severity="critical", limit=100),
            "one module": lambda: admin.list_events(module="reverse_shell", limit=100),
            "one agent": lambda: admin.list_events(agent_id=agent_id, limit=100),
            "last hour": lambda: admin.list_events(since="1h", limit=100),
            "triage status (rare)": lambda: admin.list_events(status="in_progress", limit=100),
            "one file (sha256)": lambda: admin.list_events(sha256=sha256, limit=100),
            "hostname substring (no index)": lambda: admin.list_events(
                hostname="host-77", limit=100
            ),
            "received order (follow)": lambda: admin.list_events(sort="received", limit=100),
            f"page {DEEP} by cursor": lambda: admin.list_events(limit=100, cursor=cursor),
            f"page {DEEP} by cursor, severity ≥ critical": lambda: admin.list_events(
                severity="critical", limit=100, cursor=critical["next_cursor"]
            ),
            f"page {DEEP} by offset": lambda: admin.list_events(limit=100, offset=deep),
            "counts, 24 h by hour": lambda: admin.event_counts(since="24h"),
            f"agents list ({AGENTS})": lambda: admin.list_agents(limit=1000),
        }
        results = {name: timed(call) for name, call in queries.items()}
        started = time.monotonic()
        retention = programs.run(
            "esmd", "retention", "run", "--data-dir", str(work / "esm"),
            "--events-max-rows", str(max(0, events - events // 10)),
        )  # fmt: skip
        retention_s = time.monotonic() - started
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        counted, plans = (
            big_tables_sqlite.exact_count_ms(path),
            big_tables_sqlite.plans(path, EXPLAINED),
        )
    else:
        counted, plans = exact_count_ms(url), explain(url)
    return {
        "queries_ms": results,
        "exact_count_ms": counted,
        "plans": plans,
        "retention": retention.stdout.strip() if not retention.returncode else describe(retention),
        "retention_s": retention_s,
        "retention_rows_per_s": (events // 10) / retention_s,
    }


def report_lines(figures: dict[str, Any]) -> list[str]:
    events = figures["events"]
    lines = [
        f"Large tables ({events:,} events, {AGENTS:,} agents, "
        f"{figures.get('database', 'PostgreSQL')}; "
        f"loaded at {figures['fill']['rows_per_s']:,.0f} rows/s), median of 5 calls through "
        f"the admin API, 100 rows a page, each with its capped count "
        f"(goal: every page ≤ {PAGE_GOAL_MS:.0f} ms):",
        "",
        "| query | ms | goal met |",
        "|---|---|---|",
    ]
    for name, ms in figures["queries_ms"].items():
        lines.append(f"| {name} | {ms:,.0f} | {'yes' if ms <= PAGE_GOAL_MS else 'no'} |")
    lines += [
        "",
        f"An exact COUNT(*) of every event (what each page paid before counts were capped): "
        f"{figures['exact_count_ms']:,.0f} ms.",
        f"Retention pass (delete the oldest 10 %, batches of 5,000): {figures['retention']} "
        f"in {figures['retention_s']:,.0f} s ({figures['retention_rows_per_s']:,.0f} rows/s).",
    ]
    return lines


def measure(work: Path, events: int) -> dict[str, Any]:
    _admin_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    _admin_sql(f"CREATE DATABASE {DATABASE}")
    url = f"{SERVER}/{DATABASE}"
    try:
        filled = fill(work, url, events)
        api = measure_api(work, url, events)
    finally:
        _admin_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    return {"events": events, "database": "PostgreSQL", "fill": filled, **api}


def measure_sqlite(work: Path, events: int) -> dict[str, Any]:
    """The same on SQLite (one file; ``esmd init`` makes the schema)."""
    from esmd.config import Settings
    from esmd.setup import initialise

    path = work / "big.db"
    url = f"sqlite:///{path}"
    initialise(Settings(data_dir=work / "esm", database_url=url), "admin", PASSWORD)
    filled = big_tables_sqlite.fill(path, events, AGENTS)
    api = measure_api(work, url, events)
    return {"events": events, "database": "SQLite", "fill": filled, **api}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traps-big-") as tmp:
        run = measure_sqlite if args.sqlite else measure
        figures = run(Path(tmp), args.events)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n\n" + "\n".join(report_lines(figures)))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

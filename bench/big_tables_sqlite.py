"""The large-tables data set on SQLite: the same generated events as bench/big_tables.py's
PostgreSQL fill (same agent IDs, times, skew), built with one ``INSERT … SELECT`` over a
recursive series inside SQLite (Python functions stand in for PostgreSQL's md5)."""

from __future__ import annotations

import hashlib
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

_SERIES = "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < :n)"
_FILL_AGENTS = f"""{_SERIES}
INSERT INTO agents (agent_id, secret_hash, hostname, os, os_version, agent_version, ips,
                    enrolled_at, modules, outbox_depth, events_dropped, issues, labels)
SELECT md5uuid(i), '', 'host-' || i, 'linux', '6.1', '0.1.0', '[]', stamp(0), '[]', 0, 0,
       '[]', '[]'
FROM g
"""
_FILL_EVENTS = f"""{_SERIES}
INSERT INTO events (id, agent_id, hostname, time, received_at, module, severity, action,
                    process_path, sha256, pid, ppid, parent_path, "user", uid, cmdline,
                    details, status, comment)
SELECT md5('e' || i), md5uuid(1 + i % :agents), 'host-' || (1 + i % :agents),
       stamp((:n - i) * (2592000.0 / :n)), stamp((:n - i) * (2592000.0 / :n)),
       CASE i % 5 WHEN 0 THEN 'malware' WHEN 1 THEN 'malware' WHEN 2 THEN 'restrictions'
                  WHEN 3 THEN 'child_process' ELSE 'reverse_shell' END,
       CASE (i / 7) % 6 WHEN 0 THEN 'low' WHEN 1 THEN 'medium' WHEN 2 THEN 'high'
                        WHEN 3 THEN 'high' WHEN 4 THEN 'critical' ELSE 'informational' END,
       CASE i % 3 WHEN 0 THEN 'prevented' WHEN 1 THEN 'killed' ELSE 'notified' END,
       '/tmp/sample-' || (i % 5000), md5('h' || (i % 20000)) || md5('x'),
       i % 60000, 1, '/bin/bash', 'root', 0, '/tmp/sample --run', '{{}}',
       CASE WHEN i % 1000 = 0 THEN 'in_progress' ELSE 'new' END, ''
FROM g
"""


def _md5(text: object) -> str:
    return hashlib.md5(str(text).encode()).hexdigest()


def _md5uuid(number: object) -> str:
    return str(uuid.UUID(_md5(number)))


def fill(path: Path, events: int, agents: int) -> dict[str, float]:
    """Fill the schema ``esmd init`` made at ``path``; secondary indexes rebuilt at the end."""
    now = datetime.now(UTC).replace(tzinfo=None)
    started = time.monotonic()
    connection = sqlite3.connect(path)
    connection.create_function("md5", 1, _md5, deterministic=True)
    connection.create_function("md5uuid", 1, _md5uuid, deterministic=True)
    connection.create_function(
        "stamp", 1, lambda ago: (now - timedelta(seconds=ago)).strftime("%Y-%m-%d %H:%M:%S.%f")
    )
    try:
        indexes = connection.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' "
            "AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            connection.execute(f'DROP INDEX "{name}"')
        connection.execute(_FILL_AGENTS, {"n": agents})
        connection.execute(_FILL_EVENTS, {"n": events, "agents": agents})
        for _, definition in indexes:
            connection.execute(definition)
        connection.commit()  # no ANALYZE: esmd never runs one, so neither does the bench
        loaded = time.monotonic() - started
    finally:
        connection.close()
    return {"load_s": loaded, "rows_per_s": events / loaded}


def plans(path: Path, explained: dict[str, str]) -> dict[str, str]:
    """EXPLAIN QUERY PLAN of each filter's first page."""
    connection = sqlite3.connect(path)
    connection.create_function("md5", 1, _md5, deterministic=True)
    try:
        found = {}
        for name, where in explained.items():
            clause = f"WHERE {where}" if where else ""
            rows = connection.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM events "
                f"{clause} ORDER BY time DESC, seq DESC LIMIT 101"
            ).fetchall()
            found[name] = " / ".join(str(row[3]) for row in rows)
        return found
    finally:
        connection.close()


def exact_count_ms(path: Path) -> float:
    connection = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        connection.execute("SELECT count(*) FROM events").fetchone()
        return 1000 * (time.perf_counter() - started)
    finally:
        connection.close()

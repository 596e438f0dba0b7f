"""PostgreSQL for the benchmarks: a throwaway database, and its raw batched insert rate."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from payloads import event

ADMIN_URL = os.environ.get(
    "TRAPS_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@contextmanager
def fresh_database(prefix: str = "traps_bench_") -> Iterator[str | None]:
    """A new, empty database on the bench PostgreSQL (dropped after); None if there is none."""
    import psycopg

    host = ADMIN_URL.split("@", 1)[-1].split("/", 1)[0]
    name, _, port = host.partition(":")
    try:
        socket.create_connection((name, int(port or 5432)), timeout=1).close()
    except OSError:
        yield None
        return
    database = f"{prefix}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_plain(ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + database
    finally:
        with psycopg.connect(_plain(ADMIN_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def raw_insert_rate(url: str, rows: int = 50_000) -> float:
    """Rows/s of executemany in 100-row transactions (the events table's shape)."""
    import psycopg

    with psycopg.connect(_plain(url)) as conn:
        conn.execute(
            "CREATE TABLE raw_e (agent_id TEXT, id UUID, time TIMESTAMPTZ, module TEXT,"
            " severity TEXT, action TEXT, process_path TEXT, sha256 TEXT, pid BIGINT,"
            " ppid BIGINT, parent_path TEXT, username TEXT, uid BIGINT, cmdline TEXT,"
            " details JSON, PRIMARY KEY (agent_id, id))"
        )
        conn.commit()
        data = []
        for n in range(rows):
            values = list(event(n).values())
            values[-1] = json.dumps(values[-1])
            data.append(("agent", *values))
        sql = (
            f"INSERT INTO raw_e VALUES ({','.join(['%s'] * 15)})"
            " ON CONFLICT (agent_id, id) DO NOTHING"
        )
        started = time.perf_counter()
        with conn.cursor() as cursor:
            for start in range(0, rows, 100):
                cursor.executemany(sql, data[start : start + 100])
                conn.commit()
        elapsed = time.perf_counter() - started
        conn.execute("DROP TABLE raw_e")
        conn.commit()
    return rows / elapsed

"""The durable event outbox: SQLite in WAL mode with synchronous=FULL.

An event is committed here before anything else is done with it; a row is deleted only when
the server lists its id as acknowledged. When the size cap is reached, low-value records go
first: a new event evicts the oldest events of lower severity that are not in flight, and
is itself refused only when nothing below it is left. Every event lost that way (or to a
full queue or disk) is counted in ``dropped`` (reported on every check-in) and in the open
*gap*, which becomes an ordinary event ("N events dropped, by severity, between these
times") the next time events are sent, so the server knows exactly what it is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from trapsapi.wire import SecurityEvent

OUTBOX_FILE = "outbox.db"
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS gap (severity TEXT PRIMARY KEY, count INTEGER NOT NULL,
                                first_at TEXT NOT NULL, last_at TEXT NOT NULL);
"""
_PRIORITY_COLUMN = "ALTER TABLE events ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"
_PRIORITY_INDEX = "CREATE INDEX IF NOT EXISTS events_priority ON events (priority, seq)"
PRIORITY = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
GAP_PRIORITY = 9  # a gap record is never evicted (it is what tells the server about evictions)
UNKNOWN = "unknown"  # the severity of drops that happen before an event is built


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def gap_event(by_severity: dict[str, int], first_at: str, last_at: str) -> SecurityEvent:
    """The record of events lost between ``first_at`` and ``last_at``."""
    total = sum(by_severity.values())
    return {
        "id": str(uuid.uuid4()),
        "time": _now(),
        "module": "agent",
        "severity": "medium",
        "action": "notified",
        "process_path": "",
        "sha256": None,
        "pid": None,
        "ppid": None,
        "parent_path": None,
        "user": None,
        "uid": None,
        "cmdline": "",
        "details": {
            "kind": "gap",
            "summary": f"{total} events dropped by the agent (outbox full or queue overflow)",
            "dropped": total,
            "by_severity": by_severity,
            "first_dropped_at": first_at,
            "last_dropped_at": last_at,
        },
    }


class Outbox:
    """Thread-safe (one connection behind a lock: writes are short and rare)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._unsaved_drops = 0
        self._inflight: set[str] = set()  # taken, not yet acknowledged: never evicted
        self._db = self._open()
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])

    def _open(self) -> sqlite3.Connection:
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            # A corrupt outbox must not stop enforcement: keep it aside for forensics.
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("outbox %s unusable (%s); moved to %s", self.path, exc, aside)
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                try:
                    os.unlink(f"{self.path}{suffix}")
                except FileNotFoundError:
                    pass
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # takes effect on a new file only
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
            if "priority" not in columns:  # an outbox from before priorities
                db.execute(_PRIORITY_COLUMN)
            db.execute(_PRIORITY_INDEX)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._counter("dropped") + self._unsaved_drops

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _add_counter(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    def count_dropped(self, amount: int, severity: str = UNKNOWN) -> None:
        """Record events that never reached the outbox (queue overflow, rejected by server)."""
        with self._lock:
            self._persist_drops(amount, severity)

    def _persist_drops(self, amount: int, severity: str = UNKNOWN) -> None:
        total = amount + self._unsaved_drops
        if not total:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._add_counter("dropped", total)
            self._add_gap({severity: total})
            self._db.execute("COMMIT")
            self._unsaved_drops = 0
        except sqlite3.Error:
            self._rollback()
            self._unsaved_drops = total

    def _add_gap(self, by_severity: dict[str, int]) -> None:
        now = _now()
        self._db.executemany(
            "INSERT INTO gap (severity, count, first_at, last_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(severity) DO UPDATE SET count = count + excluded.count, "
            "last_at = excluded.last_at",
            [(name, count, now, now) for name, count in by_severity.items() if count],
        )

    def _evict(self, needed: int, below: int) -> tuple[int, dict[str, int]]:
        """Delete the oldest events of priority < ``below`` (not in flight) until ``needed``
        bytes are free: (bytes freed, events evicted by severity)."""
        freed = 0
        by_severity: dict[str, int] = {}
        inflight = sorted(self._inflight)
        query = (
            "SELECT seq, size, json_extract(body, '$.severity') FROM events WHERE priority < ? "
            f"AND id NOT IN ({','.join('?' * len(inflight))}) ORDER BY priority, seq LIMIT 256"
        )
        while freed < needed:
            batch = self._db.execute(query, (below, *inflight)).fetchall()
            if not batch:
                break
            for seq, size, severity in batch:
                self._db.execute("DELETE FROM events WHERE seq = ?", (seq,))
                freed += int(size)
                by_severity[str(severity)] = by_severity.get(str(severity), 0) + 1
                if freed >= needed:
                    break
        return freed, by_severity

    def add(self, events: Sequence[SecurityEvent]) -> int:
        """Commit ``events`` durably; return how many were stored (the rest are counted)."""
        bodies = [
            (event["id"], json.dumps(event, separators=(",", ":")), event.get("severity", ""))
            for event in events
        ]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                stored, lost = self._insert(bodies)
                if lost:
                    self._add_counter("dropped", sum(lost.values()))
                    self._add_gap(lost)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                self._recount()
                log.error(
                    "outbox: cannot store %d events (%s); counted as dropped", len(events), exc
                )
                self._unsaved_drops += len(events)
                return 0
            self._recount()
            if lost:
                log.warning(
                    "outbox full (%d bytes): %d events dropped (%s)",
                    self.max_bytes,
                    sum(lost.values()),
                    ", ".join(f"{n} {name}" for name, n in sorted(lost.items())),
                )
        return stored

    def _insert(self, bodies: list[tuple[str, str, str]]) -> tuple[int, dict[str, int]]:
        """Insert in the open transaction, evicting lower-priority rows when full."""
        stored = 0
        lost: dict[str, int] = {}
        size = self._bytes
        for event_id, body, severity in bodies:
            priority = PRIORITY.get(severity, 0)
            if size + len(body) > self.max_bytes:
                freed, evicted = self._evict(size + len(body) - self.max_bytes, priority)
                size -= freed
                for name, count in evicted.items():
                    lost[name] = lost.get(name, 0) + count
            if size + len(body) > self.max_bytes:
                lost[severity or UNKNOWN] = lost.get(severity or UNKNOWN, 0) + 1
                continue
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO events (id, size, body, priority) VALUES (?, ?, ?, ?)",
                (event_id, len(body), body, priority),
            )
            if cursor.rowcount:
                stored += 1
                size += len(body)
        return stored, lost

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _recount(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])

    def take(self, limit: int) -> list[SecurityEvent]:
        """The oldest ``limit`` events, still kept until acknowledged (and never evicted
        until then). An open gap is first sealed into a gap event of its own."""
        with self._lock:
            self._seal_gap()
            rows = self._db.execute(
                "SELECT id, body FROM events ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            self._inflight = {str(row[0]) for row in rows}
        return [cast(SecurityEvent, json.loads(row[1])) for row in rows]

    def _seal_gap(self) -> None:
        gap = self._db.execute("SELECT severity, count, first_at, last_at FROM gap").fetchall()
        if not gap:
            return
        event = gap_event(
            {str(r[0]): int(r[1]) for r in gap}, min(r[2] for r in gap), max(r[3] for r in gap)
        )
        body = json.dumps(event, separators=(",", ":"))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO events (id, size, body, priority) VALUES (?, ?, ?, ?)",
                (event["id"], len(body), body, GAP_PRIORITY),
            )
            self._db.execute("DELETE FROM gap")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            log.error("outbox: cannot record the gap of dropped events (%s)", exc)
            return
        self._depth += 1
        self._bytes += len(body)

    def pending_gap(self) -> dict[str, Any]:
        """Drops not yet sealed into a gap event (for status)."""
        with self._lock:
            rows = self._db.execute("SELECT severity, count FROM gap").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def ack(self, ids: Iterable[str]) -> int:
        """Delete exactly the acknowledged ids; return how many rows went."""
        wanted = [str(i) for i in ids]
        if not wanted:
            return 0
        with self._lock:
            deleted = freed = 0
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    where = f"FROM events WHERE id IN ({marks})"
                    count, size = self._db.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(size), 0) {where}", chunk
                    ).fetchone()
                    self._db.execute(f"DELETE {where}", chunk)
                    deleted, freed = deleted + int(count), freed + int(size)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                raise
            self._depth -= deleted
            self._bytes -= freed
            self._inflight.difference_update(wanted)
            self._persist_drops(0)
            if self._depth == 0 and deleted:
                self._db.executescript("PRAGMA incremental_vacuum;")  # disk back after a backlog
        return deleted

    def close(self) -> None:
        with self._lock:
            self._db.close()


def outbox_path(state_dir: Path) -> Path:
    return state_dir / OUTBOX_FILE


def peek_depth(state_dir: Path) -> tuple[int, int] | None:
    """(depth, dropped) read-only, for `trapsd status` while the daemon is down."""
    path = outbox_path(state_dir)
    if not path.exists():
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            depth = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            row = db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return int(depth), int(row[0]) if row else 0

"""The durable event outbox: SQLite in WAL mode with synchronous=FULL.

An event is committed here before anything else is done with it; a row is deleted only when
the server lists its id as acknowledged. What cannot be stored (size cap, full disk) is
counted in ``dropped`` (persisted when possible) and reported on every check-in.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

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
"""


class Outbox:
    """Thread-safe (one connection behind a lock: writes are short and rare)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._unsaved_drops = 0
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

    def count_dropped(self, amount: int) -> None:
        """Record events that never reached the outbox (queue overflow, rejected by server)."""
        with self._lock:
            self._persist_drops(amount)

    def _persist_drops(self, amount: int) -> None:
        total = amount + self._unsaved_drops
        if not total:
            return
        try:
            self._add_counter("dropped", total)
            self._unsaved_drops = 0
        except sqlite3.Error:
            self._unsaved_drops = total

    def add(self, events: Sequence[SecurityEvent]) -> int:
        """Commit ``events`` durably; return how many were stored (the rest are counted)."""
        bodies = [(event["id"], json.dumps(event, separators=(",", ":"))) for event in events]
        with self._lock:
            rows: list[tuple[str, int, str]] = []
            size = self._bytes
            for event_id, body in bodies:
                if size + len(body) <= self.max_bytes:
                    size += len(body)
                    rows.append((event_id, len(body), body))
            refused = len(events) - len(rows)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                before = self._db.total_changes
                self._db.executemany(
                    "INSERT OR IGNORE INTO events (id, size, body) VALUES (?, ?, ?)", rows
                )
                stored = self._db.total_changes - before
                if refused:
                    self._add_counter("dropped", refused)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                log.error("outbox: cannot store %d events (%s); counted as dropped", len(rows), exc)
                self._unsaved_drops += len(events)
                return 0
            self._depth += stored
            self._bytes += sum(r[1] for r in rows) if stored == len(rows) else 0
            if stored != len(rows):  # duplicates ignored: recount exactly
                self._recount()
            if refused:
                log.warning("outbox full (%d bytes): %d events counted as dropped", size, refused)
        return stored

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def _recount(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        self._depth, self._bytes = int(row[0]), int(row[1])

    def take(self, limit: int) -> list[SecurityEvent]:
        """The oldest ``limit`` events, still kept until acknowledged."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM events ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [cast(SecurityEvent, json.loads(row[0])) for row in rows]

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
                self._persist_drops(0)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._rollback()
                raise
            self._depth -= deleted
            self._bytes -= freed
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

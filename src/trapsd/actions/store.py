"""The agent's durable action queue (``actions.db``, SQLite like the outbox).

States: ``new`` (received) -> ``running`` -> ``done`` (result stored) -> ``reported``
(the server acknowledged it). A row found ``running`` at start-up was interrupted by a crash
or a stop: it is reported failed, so every received action gets a result (at least once;
the server ignores repeats). Reported rows are the local action history (the newest
``HISTORY_KEEP``), which ``clear_history`` empties.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trapsapi.wire_actions import ActionOrder

ACTIONS_FILE = "actions.db"
HISTORY_KEEP = 200
_SCHEMA = """
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    params TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    state TEXT NOT NULL,
    outcome TEXT,
    result TEXT,
    detail TEXT NOT NULL DEFAULT '',
    finished_at REAL
);
"""


@dataclass
class StoredAction:
    id: str
    type: str
    params: dict[str, Any]
    expires_at: str
    state: str
    outcome: str | None
    result: dict[str, Any] | None
    detail: str
    received_at: float
    finished_at: float | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "params": self.params,
            "state": self.state,
            "outcome": self.outcome,
            "detail": self.detail,
            "received_at": self.received_at,
            "finished_at": self.finished_at,
        }


class ActionStore:
    def __init__(self, state_dir: Path) -> None:
        path = state_dir / ACTIONS_FILE
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, orders: list[ActionOrder]) -> int:
        """Store newly received actions (a repeat delivery of one is ignored)."""
        rows = [
            (o["id"], o["type"], json.dumps(o.get("params") or {}), o["expires_at"], time.time())
            for o in orders
        ]
        with self._lock:
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO actions (id, type, params, expires_at, received_at, state)"
                " VALUES (?, ?, ?, ?, ?, 'new')",
                rows,
            )
            return self._db.total_changes - before

    def _rows(self, where: str, args: tuple[Any, ...] = ()) -> list[StoredAction]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, type, params, expires_at, state, outcome, result, detail, "
                f"received_at, finished_at FROM actions WHERE {where} ORDER BY received_at, id",
                args,
            ).fetchall()
        return [
            StoredAction(
                r[0],
                r[1],
                json.loads(r[2]),
                r[3],
                r[4],
                r[5],
                json.loads(r[6]) if r[6] else None,
                r[7],
                r[8],
                r[9],
            )
            for r in rows
        ]

    def unfinished(self) -> list[StoredAction]:
        """Everything not yet reported: new, running (interrupted) and done."""
        return self._rows("state != 'reported'")

    def history(self) -> list[StoredAction]:
        return self._rows("state = 'reported'")

    def mark_running(self, action_id: str) -> None:
        self._set("UPDATE actions SET state = 'running' WHERE id = ?", (action_id,))

    def finish(self, action_id: str, outcome: str, result: dict[str, Any], detail: str) -> None:
        self._set(
            "UPDATE actions SET state = 'done', outcome = ?, result = ?, detail = ?, "
            "finished_at = ? WHERE id = ?",
            (outcome, json.dumps(result), detail[:1024], time.time(), action_id),
        )

    def mark_reported(self, action_id: str) -> None:
        self._set("UPDATE actions SET state = 'reported' WHERE id = ?", (action_id,))
        self._set(
            "DELETE FROM actions WHERE state = 'reported' AND id NOT IN (SELECT id FROM actions"
            " WHERE state = 'reported' ORDER BY finished_at DESC LIMIT ?)",
            (HISTORY_KEEP,),
        )

    def clear_history(self) -> int:
        with self._lock:
            return self._db.execute("DELETE FROM actions WHERE state = 'reported'").rowcount

    def _set(self, statement: str, args: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute(statement, args)

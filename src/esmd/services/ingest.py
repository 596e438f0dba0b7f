"""The event ingest hot path: one batched, idempotent Core INSERT, acknowledged after commit.

``ON CONFLICT (agent_id, id) DO NOTHING`` makes a re-sent batch (the agent's at-least-once
outbox, or two servers receiving the same batch at once) add nothing; ``RETURNING`` tells
which rows were new. The key includes the agent ID, so no agent can touch another's events.
On PostgreSQL the batch goes as one ``INSERT … SELECT FROM unnest(<one array per column>)``
on the driver: one statement, one round trip, whatever the batch size.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Insert
from sqlalchemy.dialects import postgresql, sqlite

from esmd.db.driver import Driver
from esmd.db.engine import Database
from esmd.db.tables import EVENTS
from esmd.services.agents import authenticate, finish_rotation
from esmd.services.storable import check_int64, check_json, check_no_nul
from esmd.timeutil import as_utc, utcnow
from trapsapi.models import EventAck, EventBatch

_TEXT = ("module", "process_path", "parent_path", "user", "cmdline")
_INTEGERS = ("pid", "ppid", "uid")


def insert_statement(dialect: str) -> Insert:
    """``INSERT … ON CONFLICT (agent_id, id) DO NOTHING RETURNING id`` for the dialect."""
    key = [EVENTS.c.agent_id, EVENTS.c.id]
    if dialect == "postgresql":
        return (
            postgresql.insert(EVENTS)
            .on_conflict_do_nothing(index_elements=key)
            .returning(EVENTS.c.id)
        )
    if dialect == "sqlite":
        return (
            sqlite.insert(EVENTS).on_conflict_do_nothing(index_elements=key).returning(EVENTS.c.id)
        )
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


_STATEMENTS = {name: insert_statement(name) for name in ("postgresql", "sqlite")}
# PostgreSQL: the whole batch as one array per column, in one statement and one round trip
# (a multi-row VALUES through Core costs ~10 times more Python per row than the database).
_COLUMNS = {
    "id": "uuid",
    "agent_id": "text",
    "hostname": "text",
    "time": "timestamptz",
    "received_at": "timestamptz",
    "module": "text",
    "severity": "text",
    "action": "text",
    "process_path": "text",
    "sha256": "text",
    "pid": "int8",
    "ppid": "int8",
    "parent_path": "text",
    "user": "text",
    "uid": "int8",
    "cmdline": "text",
    "details": "json",
}
_INSERT_UNNEST = (
    "INSERT INTO events ("
    + ", ".join(f'"{name}"' for name in _COLUMNS)
    + ") SELECT * FROM unnest("
    + ", ".join(f"%s::{kind}[]" for kind in _COLUMNS.values())
    + ") ON CONFLICT (agent_id, id) DO NOTHING RETURNING id"
)


def _insert_postgres(driver: Driver, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows`` (the Core parameters) with :data:`_INSERT_UNNEST`; how many were new."""
    arrays: list[list[Any]] = [[row[name] for row in rows] for name in _COLUMNS]
    arrays[-1] = [json.dumps(details) for details in arrays[-1]]  # as the JSON type stores it
    return len(driver.raw.execute(_INSERT_UNNEST, arrays).fetchall())


def ingest(db: Database, credential: str, batch: EventBatch) -> EventAck:
    events = []
    seen = set()
    for index, event in enumerate(batch.events):
        for name in _TEXT:
            check_no_nul(getattr(event, name), f"events.{index}.{name}")
        for name in _INTEGERS:
            check_int64(getattr(event, name), f"events.{index}.{name}")
        if event.details:
            check_json(event.details, f"events.{index}.details")
        if event.id not in seen:  # the same ID twice in one batch is one event
            seen.add(event.id)
            events.append(event)
    received_at = utcnow()
    with db.write() as connection:
        agent = authenticate(connection, credential)
        finish_rotation(connection, agent)
        rows: list[dict[str, Any]] = [
            {
                "id": event.id,
                "agent_id": agent.agent_id,
                "hostname": agent.hostname,
                "time": as_utc(event.time),
                "received_at": received_at,
                "module": event.module,
                "severity": event.severity.value,
                "action": event.action.value,
                "process_path": event.process_path,
                "sha256": event.sha256,
                "pid": event.pid,
                "ppid": event.ppid,
                "parent_path": event.parent_path,
                "user": event.user,
                "uid": event.uid,
                "cmdline": event.cmdline,
                "details": event.details,
            }
            for event in events
        ]
        if connection.dialect.name == "postgresql":
            inserted = _insert_postgres(Driver(connection), rows)
        else:
            inserted = len(connection.execute(_STATEMENTS[connection.dialect.name], rows).all())
    return EventAck(acked=[event.id for event in events], inserted=inserted)

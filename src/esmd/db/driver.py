"""Driver-level statements for the hot paths, inside a SQLAlchemy transaction.

A Core ``execute`` costs ~40-60 µs of Python before the driver sees it (compiled-cache
lookup, parameter processing, result metadata); the driver itself needs a few. The hot paths
(check-in, wake-up checks) therefore run fixed SQL on the DB-API connection of the
transaction that ``Database.write()`` opened: sqlite3 (``?``) or psycopg 3 (``%s``, which
prepares a statement server-side after a few executions). Values are adapted the way the
SQLAlchemy column types store them (``UTCDateTime``, ``JSON``), so both paths read alike.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection


class Statement:
    """One SQL text written with ``?`` placeholders, in both dialects' spelling."""

    def __init__(self, sql: str) -> None:
        self.sqlite = sql
        self.postgresql = sql.replace("?", "%s")


class Driver:
    """The DB-API connection of ``connection``'s transaction, with value adapters."""

    def __init__(self, connection: Connection) -> None:
        self.raw: Any = connection.connection.driver_connection
        self.postgres = connection.dialect.name == "postgresql"

    def execute(self, statement: Statement, params: tuple[Any, ...]) -> Any:
        """The driver's cursor after running ``statement`` with ``params``."""
        if self.postgres:
            return self.raw.execute(statement.postgresql, params)
        return self.raw.execute(statement.sqlite, params)

    def one(self, statement: Statement, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.execute(statement, params).fetchone()
        return row

    def timestamp(self, value: datetime) -> Any:
        """As ``UTCDateTime`` binds it: aware for PostgreSQL, naive UTC text for SQLite."""
        if self.postgres:
            return value
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def read_timestamp(self, value: Any) -> datetime | None:
        """A timestamp the driver returned, aware (SQLite hands back the naive UTC text)."""
        if value is None:
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)

    @staticmethod
    def read_json(value: Any) -> Any:
        """A JSON column's value (psycopg parses it; sqlite3 returns the text)."""
        return json.loads(value) if isinstance(value, str | bytes) else value

    @staticmethod
    def json(value: Any) -> str:
        """As the ``JSON`` column type stores it (``None`` is the JSON ``null``)."""
        return json.dumps(value)

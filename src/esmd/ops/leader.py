"""One leader at a time for background jobs that must not run twice (export, retention).

PostgreSQL: a session-level ``pg_try_advisory_lock`` held on a dedicated connection; when
that connection drops, the lock is released by the server and another process takes over.
SQLite: one ``esmd serve`` process per database file is the supported set-up, so the
process is always the leader.
"""

from __future__ import annotations

import hashlib
import logging

from sqlalchemy import Connection, Engine, func, select

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``name``."""
    digest = hashlib.sha256(f"esmd:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Leadership:
    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.key = lock_key(name)
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        """Whether this process leads ``name`` now (cheap to call before every step)."""
        if self.is_sqlite:
            return True
        if self._connection is not None:
            try:
                self._connection.execute(select(1))
                self._connection.commit()
                return True
            except Exception:
                log.warning("lost the database connection holding the %s lock", self.name)
                self._drop()
        connection = self.engine.connect()
        try:
            won = bool(connection.execute(select(func.pg_try_advisory_lock(self.key))).scalar())
            connection.commit()
        except Exception:
            connection.close()
            raise
        if not won:
            connection.close()
            return False
        log.info("this process now runs %s", self.name)
        self._connection = connection
        return True

    def release(self) -> None:
        if self._connection is None:
            return
        try:
            self._connection.execute(select(func.pg_advisory_unlock(self.key)))
            self._connection.commit()
        except Exception:  # the server frees the lock with the session anyway
            pass
        self._drop()

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.invalidate()
                self._connection.close()
            finally:
                self._connection = None

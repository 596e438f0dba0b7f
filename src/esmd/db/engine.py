"""Engines and the connection policy for SQLite (one writer) and PostgreSQL (many).

SQLite admits one writer at a time. Writers in this process are serialised by a lock and
open their transaction with ``BEGIN IMMEDIATE``, so a transaction never has to upgrade a
read lock (which fails at once with "database is locked" instead of waiting); other
processes are waited for by ``busy_timeout``. Readers use WAL snapshots and never block.
PostgreSQL needs none of this: its writers run concurrently.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlmodel import Session

P = ParamSpec("P")
T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
_BEGIN_OPTION = "esmd_sqlite_begin"


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling is unusable).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        f"busy_timeout={BUSY_TIMEOUT_MS}",
        "foreign_keys=ON",
        "temp_store=MEMORY",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "")
    # Straight to the driver: this runs for every transaction of the hot paths.
    connection.connection.driver_connection.execute(  # type: ignore[union-attr]
        "BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN"
    )


def make_engine(url: str | URL, *, pool_size: int = 10, max_overflow: int | None = None) -> Engine:
    """An engine for ``url`` with the SQLite pragmas or the PostgreSQL pool settings."""
    parsed = make_url(url)
    overflow = 2 * pool_size if max_overflow is None else max_overflow
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=overflow,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=overflow,
        pool_pre_ping=True,
        pool_recycle=3600,
    )


class Database:
    """The engine of one app plus the rules for reading and writing it."""

    def __init__(
        self, engine: Engine, *, writer_lock: contextlib.AbstractContextManager[Any] | None = None
    ) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._writer_lock: contextlib.AbstractContextManager[Any] = writer_lock or (
            threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._write_engine = (
            engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"}) if self.is_sqlite else engine
        )
        self._on_loop: Database | None = None
        self._listeners: list[tuple[str, Callable[..., Any]]] = []

    def listen(self, name: str, function: Callable[..., Any]) -> None:
        """Register an engine event (e.g. ``commit``) on every engine of this database."""
        self._listeners.append((name, function))
        event.listen(self.engine, name, function)
        if self._on_loop is not None:
            self._on_loop.listen(name, function)

    @classmethod
    def from_url(cls, url: str, pool_size: int = 10, max_overflow: int = 30) -> Database:
        return cls(make_engine(url, pool_size=pool_size, max_overflow=max_overflow))

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reads; its transaction is rolled back on exit."""
        with self.engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on normal exit, rolled back on error."""
        with self._writer_lock, self._write_engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """An ORM session for reads (admin listings)."""
        with Session(self.engine) as session:
            yield session

    @contextlib.contextmanager
    def write_session(self) -> Iterator[Session]:
        """An ORM session whose work is committed on normal exit, rolled back on error."""
        with self._writer_lock, Session(self._write_engine, expire_on_commit=False) as session:
            with session.begin():
                yield session

    async def run(
        self, function: Callable[Concatenate[Database, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``function(database, *args)`` from a coroutine (the hot paths).

        SQLite work runs right here on the event loop: it is sub-millisecond local I/O and
        its writers are serialised anyway, so threads would only add hops and contention
        (perf.md: 2.5 times the throughput). It gets a connection of its own, so it never
        waits for the pool that the threadpool's admin queries share. PostgreSQL work waits
        on the network and runs in the threadpool, so that many requests proceed at once.
        """
        if self.is_sqlite:
            if self._on_loop is None:
                loop_engine = make_engine(self.engine.url, pool_size=1, max_overflow=0)
                self._on_loop = Database(loop_engine, writer_lock=self._writer_lock)
                for name, listener in self._listeners:
                    self._on_loop.listen(name, listener)
            return function(self._on_loop, *args, **kwargs)
        return await anyio.to_thread.run_sync(functools.partial(function, self, *args, **kwargs))

    def dispose(self) -> None:
        self.engine.dispose()
        if self._on_loop is not None:
            self._on_loop.dispose()

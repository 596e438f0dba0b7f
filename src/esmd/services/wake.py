"""The wake channel: agents hold a long-poll; a policy change or an agent's own news ends it.

``Notifier`` lives on the event loop of one esmd process. Each waiting agent is one future in
a dict (no task, no socket of our own): a wake-up resolves it, a timer ends it with ``None``
(the route then answers 204). Sources of wake-ups:

* a committed transaction that called ``bump_version`` (policy) or ``notify_agents`` (say
  the action centre queued something): the engine's commit hook tells this process at once;
* on PostgreSQL, ``pg_notify`` in the same transaction reaches every esmd process through
  ``LISTEN esmd_wake`` (a psycopg async connection per process, reconnected on loss), so a
  change made through one server wakes agents waiting on the others;
* every check-in reports the current policy version it read (a fallback if a NOTIFY was lost).

A policy change wakes every waiting agent, so the wake-ups are spread at random over
``waiting / wake_rate`` seconds: a broadcast turns into a bounded check-in rate, not a herd.
An agent notified while it is between two long-polls finds its flag on the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from esmd.metrics import Metrics

log = logging.getLogger(__name__)
CHANNEL = "esmd_wake"
POLICY = "policy"
PENDING = "pending"
_POLICY_KEY = "esmd_wake_policy"
_AGENTS_KEY = "esmd_wake_agents"
_PAYLOAD_IDS = 200  # 200 UUIDs and commas stay below PostgreSQL's 8000-byte NOTIFY payload


def notify_agents(connection: Connection, agent_ids: Iterable[str]) -> None:
    """Wake these agents when the current transaction commits (call inside it).

    On PostgreSQL the NOTIFY is transactional: a rolled-back change wakes nobody.
    """
    ids = sorted(set(agent_ids))
    if not ids:
        return
    connection.info.setdefault(_AGENTS_KEY, set()).update(ids)
    if connection.dialect.name == "postgresql":
        for start in range(0, len(ids), _PAYLOAD_IDS):
            payload = "agents:" + ",".join(ids[start : start + _PAYLOAD_IDS])
            connection.exec_driver_sql(
                "SELECT pg_notify(%(c)s, %(p)s)", {"c": CHANNEL, "p": payload}
            )


def policy_bumped(connection: Connection, version: int) -> None:
    """Record (inside the transaction) that the policy version became ``version``."""
    connection.info[_POLICY_KEY] = version
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_notify(%(c)s, %(p)s)", {"c": CHANNEL, "p": f"{POLICY}:{version}"}
        )


class Notifier:
    """The waiting agents of this process and what wakes them (see the module docstring)."""

    def __init__(self, metrics: Metrics, wake_rate: float, pending_ttl_s: float = 120.0) -> None:
        self.metrics = metrics
        self.wake_rate = wake_rate
        self.pending_ttl_s = pending_ttl_s
        self.policy_version = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, asyncio.Future[str | None]] = {}
        self._pending: dict[str, float] = {}
        self._listener: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, policy_version: int, database_url: str | None = None) -> None:
        """Start on the running loop; with a PostgreSQL URL, also LISTEN across processes."""
        self.loop = asyncio.get_running_loop()
        self.policy_version = policy_version
        if database_url is not None and make_url(database_url).get_backend_name() == "postgresql":
            self._listener = self.loop.create_task(self._listen(database_url))

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for future in self._waiters.values():
            if not future.done():
                future.set_result(None)
        self._waiters.clear()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    # --- what wakes agents (any thread) ---------------------------------------------------
    def on_commit(self, connection: Connection) -> None:
        """The engine's commit hook: deliver what the transaction recorded."""
        version = connection.info.pop(_POLICY_KEY, None)
        agents = connection.info.pop(_AGENTS_KEY, None)
        if version is not None:
            self._threadsafe(self.policy_moved, version)
        if agents:
            self._threadsafe(self.agents_notified, agents)

    @staticmethod
    def on_rollback(connection: Connection) -> None:
        connection.info.pop(_POLICY_KEY, None)
        connection.info.pop(_AGENTS_KEY, None)

    def _threadsafe(self, function: Any, *args: Any) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.call_soon(function, *args)
        else:
            loop.call_soon_threadsafe(function, *args)

    # --- on the loop ----------------------------------------------------------------------
    def policy_moved(self, version: int) -> None:
        """The policy is now ``version``: wake every waiter, spread over waiters/wake_rate."""
        if version <= self.policy_version:
            return
        self.policy_version = version
        waiters = list(self._waiters.values())
        spread = len(waiters) / self.wake_rate
        assert self.loop is not None
        for future in waiters:
            delay = random.uniform(0, spread)  # jitter, not crypto
            self.loop.call_later(delay, _resolve, future, POLICY)

    def agents_notified(self, agent_ids: Iterable[str]) -> None:
        expires = time.monotonic() + self.pending_ttl_s
        for agent_id in agent_ids:
            future = self._waiters.get(agent_id)
            if future is not None and not future.done():
                future.set_result(PENDING)
            else:
                self._pending[agent_id] = expires

    def saw_version(self, version: int) -> None:
        """A check-in read ``version``: catch up if a notification was missed."""
        if version > self.policy_version:
            self.policy_moved(version)

    def sweep(self) -> None:
        """Forget pending flags nobody came for (the agent waits on another server)."""
        now = time.monotonic()
        for agent_id in [a for a, expires in self._pending.items() if expires < now]:
            del self._pending[agent_id]

    async def wait(self, agent_id: str, known_version: int, timeout: float) -> str | None:
        """Why the agent should check in now (``policy``, ``pending``), or None at timeout."""
        if known_version < self.policy_version:
            return POLICY
        expires = self._pending.pop(agent_id, None)
        if expires is not None and expires >= time.monotonic():
            return PENDING
        loop = asyncio.get_running_loop()
        previous = self._waiters.pop(agent_id, None)
        if previous is not None and not previous.done():
            previous.set_result(None)  # the agent reconnected: its older poll ends
        future: asyncio.Future[str | None] = loop.create_future()
        self._waiters[agent_id] = future
        timer = loop.call_later(timeout, _resolve, future, None)
        self.metrics.waits += 1
        try:
            reason = await future
        finally:
            self.metrics.waits -= 1
            timer.cancel()
            if self._waiters.get(agent_id) is future:
                del self._waiters[agent_id]
        if reason is not None:
            self.metrics.wakeups += 1
        return reason

    # --- PostgreSQL LISTEN ----------------------------------------------------------------
    async def _listen(self, database_url: str) -> None:
        import psycopg

        conninfo = make_url(database_url).set(drivername="postgresql")
        dsn = conninfo.render_as_string(hide_password=False)
        delay = 1.0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 1.0
                    async for note in conn.notifies():
                        self._deliver(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: retry, wake nobody meanwhile
                log.warning("wake channel: LISTEN failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 30.0)

    def _deliver(self, payload: str) -> None:
        kind, _, value = payload.partition(":")
        if kind == POLICY and value.isdigit():
            self.policy_moved(int(value))
        elif kind == "agents":
            self.agents_notified(a for a in value.split(",") if a)


def _resolve(future: asyncio.Future[str | None], value: str | None) -> None:
    if not future.done():
        future.set_result(value)

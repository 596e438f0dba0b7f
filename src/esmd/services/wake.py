"""The wake channel: agents hold a long-poll; a policy change or an agent's own news ends it.

``Notifier`` lives on the event loop of one esmd process. Each waiting agent is one future in
a dict (no task, no socket of our own). Sources of wake-ups:

* a committed transaction that called ``policy_bumped`` or ``notify_agents`` (the action
  centre queued something): the engine's commit hook tells this process at once;
* on PostgreSQL, ``pg_notify`` in the same transaction reaches every esmd process through
  ``LISTEN esmd_wake``: one notification per policy change, and one per action (each process
  asks the database which of the action's agents are still pending), never one per agent;
* every check-in reports the current policy version it read (a fallback if a NOTIFY was lost).

Every wake-up goes through one queue drained by a token bucket at ``wake_rate`` agents per
second (news for a few agents first, broadcasts after), so a broadcast to 10,000 waiters
costs the server a steady, bounded rate of replies, never a herd. An agent that asks for it
(``deliver``) gets the news in the reply itself: the new policy and its pending actions,
fetched and marked delivered for a whole batch of agents in one transaction, so a wake-up
costs no further request. An agent notified while it is between two long-polls finds its
flag on the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from esmd.metrics import Metrics
from esmd.services.collector import CollectorHold

log = logging.getLogger(__name__)
CHANNEL = "esmd_wake"
POLICY = "policy"
PENDING = "pending"
_POLICY_KEY = "esmd_wake_policy"
_AGENTS_KEY = "esmd_wake_agents"
_CREDENTIALS_KEY = "esmd_wake_credentials"
_COMMITTED_KEY = "esmd_wake_committed"
CREDENTIALS = "credentials"
_PAYLOAD_IDS = 200  # 200 UUIDs and commas stay below PostgreSQL's 8000-byte NOTIFY payload
BATCH = 1024
"""Most agents woken (and their news fetched, in one transaction) at once."""
FEW = 16
"""News for at most this many agents goes before any queued broadcast."""


def notify_agents(
    connection: Connection, agent_ids: Iterable[str], action_id: str | None = None
) -> None:
    """Wake these agents when the current transaction commits (call inside it).

    On PostgreSQL the NOTIFY is transactional: a rolled-back change wakes nobody. With
    ``action_id`` the other processes get one notification naming the action, whatever the
    number of agents; without it, the agent IDs themselves (200 per notification).
    """
    ids = sorted(set(agent_ids))
    if not ids:
        return
    connection.info.setdefault(_AGENTS_KEY, set()).update(ids)
    if connection.dialect.name != "postgresql":
        return
    if action_id is not None:
        payloads = [f"action:{action_id}"]
    else:
        payloads = [
            "agents:" + ",".join(ids[start : start + _PAYLOAD_IDS])
            for start in range(0, len(ids), _PAYLOAD_IDS)
        ]
    for payload in payloads:
        connection.exec_driver_sql("SELECT pg_notify(%(c)s, %(p)s)", {"c": CHANNEL, "p": payload})


def policy_bumped(connection: Connection, version: int) -> None:
    """Record (inside the transaction) that the policy version became ``version``."""
    connection.info[_POLICY_KEY] = version
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_notify(%(c)s, %(p)s)", {"c": CHANNEL, "p": f"{POLICY}:{version}"}
        )


def credentials_changed(connection: Connection, agent_id: str) -> None:
    """Record (inside the transaction) that an agent's credential was revoked or deleted: on
    commit every process forgets the connections it vouched for (re-polls authenticate again),
    so the next request with the old secret is refused everywhere."""
    connection.info.setdefault(_CREDENTIALS_KEY, set()).add(agent_id)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_notify(%(c)s, %(p)s)", {"c": CHANNEL, "p": f"{CREDENTIALS}:{agent_id}"}
        )


@dataclass(frozen=True)
class Wake:
    """Why a long-poll ended early, and (``deliver``) the reply carrying the news itself."""

    reason: str
    policy_version: int
    body: bytes | None = None


@dataclass(eq=False)
class Waiter:
    agent_id: str
    known_version: int
    future: asyncio.Future[Wake | None]
    news: Any = None
    """What the deliverer needs to build this agent's news (None: just say why)."""
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    answering: bool = False


Deliverer = Callable[[list[tuple[Waiter, str]], int], Awaitable[dict[str, bytes]]]
"""Builds the replies of a batch of woken waiters: agent ID → reply body (missing: no news)."""
ActionAgents = Callable[[str], Awaitable[list[str]]]
"""The agents for which an action is still pending (from the database)."""


class Notifier:
    """The waiting agents of this process and what wakes them (see the module docstring)."""

    def __init__(self, metrics: Metrics, wake_rate: float, pending_ttl_s: float = 120.0) -> None:
        self.metrics = metrics
        self.wake_rate = wake_rate
        self.pending_ttl_s = pending_ttl_s
        self.policy_version = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.deliverer: Deliverer | None = None
        self.action_agents: ActionAgents | None = None
        self.credentials_listener: Callable[[list[str]], None] | None = None
        """Told (on the loop) of agents whose credential was revoked or deleted."""
        self.news_listener: Callable[[list[str] | None], None] | None = None
        """Told (on the loop) of agents with news (an action), and with None of possibly
        missed news (the LISTEN connection was made again)."""
        self._waiters: dict[str, Waiter] = {}
        self._pending: dict[str, float] = {}
        self._queue: deque[str] = deque()
        self._queued: dict[str, str] = {}
        self._queued_event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.closing = False
        self.collector = CollectorHold()
        self.settle_s = 0.5
        """After a broadcast, how long the collector stays held for the re-polls to come."""
        self._answering = 0
        """Waiters handed their wake-up whose reply is not out yet."""

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, policy_version: int, database_url: str | None = None) -> None:
        """Start on the running loop; with a PostgreSQL URL, also LISTEN across processes."""
        self.loop = asyncio.get_running_loop()
        self.policy_version = policy_version
        self._queued_event = asyncio.Event()
        self._tasks.append(self.loop.create_task(self._pump()))
        if database_url is not None and make_url(database_url).get_backend_name() == "postgresql":
            from esmd.services.wake_listen import listen

            self._tasks.append(self.loop.create_task(listen(self, database_url)))

    def release_all(self) -> None:
        """The server is stopping: end every held poll now (as a timeout: the agent polls
        again, at another server if this one is gone) and hold no new one."""
        self.closing = True
        for waiter in list(self._waiters.values()):
            _resolve(waiter.future, None)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self.collector.release()
        for waiter in self._waiters.values():
            _resolve(waiter.future, None)
        self._waiters.clear()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def queued(self) -> int:
        return len(self._queue)

    # --- what wakes agents (any thread) ---------------------------------------------------
    def on_commit(self, connection: Connection) -> None:
        """The engine's commit hook. It runs *before* the database commits, so a reader woken
        now could still see the previous state (an action not yet there): what the
        transaction recorded is kept with the connection until it goes back to the pool
        (:meth:`on_checkin`), after the commit."""
        info = connection.info
        recorded = (
            info.pop(_POLICY_KEY, None),
            info.pop(_AGENTS_KEY, None),
            info.pop(_CREDENTIALS_KEY, None),
        )
        if recorded[0] is not None or recorded[1] or recorded[2]:
            info.setdefault(_COMMITTED_KEY, []).append(recorded)

    def on_checkin(self, _dbapi_connection: Any, record: Any) -> None:
        """The pool's check-in hook: deliver what the connection's transactions committed
        (what an uncommitted one recorded is dropped with it)."""
        info = record.info
        for key in (_POLICY_KEY, _AGENTS_KEY, _CREDENTIALS_KEY):
            info.pop(key, None)
        for version, agents, revoked in info.pop(_COMMITTED_KEY, ()):
            if revoked:
                self._threadsafe(self.credentials_revoked, sorted(revoked))
            if version is not None:
                self._threadsafe(self.policy_moved, version)
            if agents:
                self._threadsafe(self.agents_notified, agents)

    @staticmethod
    def on_rollback(connection: Connection) -> None:
        connection.info.pop(_POLICY_KEY, None)
        connection.info.pop(_AGENTS_KEY, None)
        connection.info.pop(_CREDENTIALS_KEY, None)

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
        """The policy is now ``version``: queue every waiter that is behind it."""
        if version <= self.policy_version:
            return
        self.policy_version = version
        for waiter in list(self._waiters.values()):
            if waiter.known_version < version:
                self._enqueue(waiter.agent_id, POLICY, first=False)

    def credentials_revoked(self, agent_ids: list[str]) -> None:
        if self.credentials_listener is not None:
            self.credentials_listener(agent_ids)

    def agents_notified(self, agent_ids: Iterable[str]) -> None:
        ids = list(agent_ids)
        if self.news_listener is not None:
            self.news_listener(ids)
        expires = time.monotonic() + self.pending_ttl_s
        few = len(ids) <= FEW
        for agent_id in ids:
            if agent_id in self._waiters:
                self._enqueue(agent_id, PENDING, first=few)
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

    def _enqueue(self, agent_id: str, reason: str, first: bool) -> None:
        queued = self._queued.get(agent_id)
        if queued is not None:
            if reason == PENDING:
                self._queued[agent_id] = PENDING
            return
        self._queued[agent_id] = reason
        if first:
            self._queue.appendleft(agent_id)
        else:
            self._queue.append(agent_id)
        self._queued_event.set()

    async def wait(
        self, agent_id: str, known_version: int, timeout: float, news: Any = None
    ) -> Wake | None:
        """Why the agent should check in now (and its news if ``news`` says how to build
        them), or None at the timeout."""
        if self.closing:
            return None
        loop = asyncio.get_running_loop()
        previous = self._waiters.pop(agent_id, None)
        if previous is not None and previous.timer is not None:
            _resolve(previous.future, None)  # the agent reconnected: its older poll ends
        waiter = Waiter(agent_id, known_version, loop.create_future(), news)
        self._waiters[agent_id] = waiter
        waiter.timer = loop.call_later(timeout, _resolve, waiter.future, None)
        expires = self._pending.pop(agent_id, None)
        if expires is not None and expires >= time.monotonic():
            self._enqueue(agent_id, PENDING, first=True)
        elif known_version < self.policy_version:
            self._enqueue(agent_id, POLICY, first=False)
        self.metrics.waits += 1
        try:
            wake = await waiter.future
        finally:
            self.metrics.waits -= 1
            if waiter.answering:
                self._answering -= 1
            if waiter.timer is not None:
                waiter.timer.cancel()
            if self._waiters.get(agent_id) is waiter:
                del self._waiters[agent_id]
        if wake is not None:
            self.metrics.wakeups += 1
        return wake

    # --- the paced queue ------------------------------------------------------------------
    async def _pump(self) -> None:
        """Wake queued agents at ``wake_rate`` per second: a token bucket holding at most
        a tenth of a second's worth (and one batch)."""
        burst = max(1.0, min(float(BATCH), self.wake_rate / 10))
        tokens, last = burst, time.monotonic()
        while True:
            if not self._queue:
                if self.collector.holding and not self.collector.settling:
                    for _ in range(200):  # the last replies go out (a second at most)
                        if not self._answering or self._queue:
                            break
                        await asyncio.sleep(0.005)
                    if not self._queue:
                        self.collector.settle(self.settle_s)
                    continue
                self._queued_event.clear()
                await self._queued_event.wait()
            if len(self._queue) > FEW:  # a broadcast: no garbage collection until it is out
                self.collector.hold()
            now = time.monotonic()
            tokens, last = min(burst, tokens + (now - last) * self.wake_rate), now
            wanted = min(float(len(self._queue)), burst)  # whole batches: one transaction each
            if tokens < wanted:
                await asyncio.sleep((wanted - tokens) / self.wake_rate)
                continue
            batch: list[tuple[Waiter, str]] = []
            while self._queue and len(batch) < int(tokens):
                agent_id = self._queue.popleft()
                reason = self._queued.pop(agent_id)
                waiter = self._waiters.get(agent_id)
                if waiter is None or waiter.future.done():
                    if reason == PENDING:  # it left meanwhile: its next poll gets it
                        self._pending[agent_id] = time.monotonic() + self.pending_ttl_s
                    continue
                if waiter.timer is not None:  # claimed: no timeout may answer it now
                    waiter.timer.cancel()
                    waiter.timer = None
                batch.append((waiter, reason))
            tokens -= len(batch)
            if batch:
                try:
                    await self._wake(batch)
                except Exception:  # never let the pump die; the agents get the bare reason
                    log.exception("wake channel: delivering news failed")
                    for waiter, reason in batch:
                        self._answer(waiter, Wake(reason, self.policy_version))

    async def _wake(self, batch: list[tuple[Waiter, str]]) -> None:
        version = self.policy_version
        bodies: dict[str, bytes] = {}
        rich = [(w, r) for w, r in batch if w.news is not None]
        if rich and self.deliverer is not None:
            bodies = await self.deliverer(rich, version)
        for waiter, reason in batch:
            self._answer(waiter, Wake(reason, version, bodies.get(waiter.agent_id)))

    def _answer(self, waiter: Waiter, wake: Wake) -> None:
        if not waiter.future.done():
            waiter.answering = True
            self._answering += 1
            waiter.future.set_result(wake)


def _resolve(future: asyncio.Future[Wake | None], value: Wake | None) -> None:
    if not future.done():
        future.set_result(value)

"""Write-behind of pure liveness: a check-in that repeats the last one is answered at once.

Most check-ins change nothing: the agent says it is alive, with the same hostname, modules,
policy version... as last time, and only its footprint (RSS, CPU), outbox depth and
dropped-event count move. After a check-in that was committed as usual (the group commit
of ``esmd.services.checkin_group``) and left the agent's row at a fixed point (see
``esmd.services.checkin.Fixed``), this process remembers the agent: its credential, the
request, the reply it got. The next check-in of that agent is answered from memory, with no
transaction, when

* it carries the same credential (compared in constant time),
* its body is the same bytes, or validates to a request that differs only in the
  telemetry fields above,
* the policy has not moved since (``Notifier.policy_version``), and no action was queued
  for the agent, nor its credential, labels or group changed, nor it was deleted (each of
  these reaches every process through the wake channel and drops the agent from memory).

Its ``last_checkin_at`` and telemetry are kept in memory and written by :meth:`flush`, one
transaction for all of them, every ``interval_s`` (default 1 s) and at shutdown, so the
database lags by at most about that. The flush writes a row only while its
``last_checkin_at`` is still the one this process last wrote: if anything else wrote the
agent meanwhile (another esmd process, the declared FastAPI route), or its credential is no
longer the one remembered (revoked, rotated), only the newer time is kept and the agent is
dropped from memory, so its next check-in here runs the full path again.
Anything that changes the agent's state (status, modules, policy applied, addresses,
instance, a stopping agent...) goes the full way and is committed before its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic_core import to_json

from esmd.db.driver import Driver, Statement
from esmd.db.engine import Database
from esmd.services.storable import check_finite, check_int64
from trapsapi.models import CheckinRequest

log = logging.getLogger(__name__)
TELEMETRY: set[str] = {"footprint", "outbox_depth", "events_dropped"}
"""What a check-in may change and still be answered from memory (written behind)."""
Telemetry = tuple[str, int, int]
"""(footprint as JSON text, outbox depth, dropped events) of one check-in, as written."""
_TIME_KEY = b'"server_time":'
_FLUSH = Statement(
    "UPDATE agents SET last_checkin_at = ?, footprint = ?, outbox_depth = ?, events_dropped = ?"
    " WHERE agent_id = ? AND last_checkin_at = ? AND secret_hash = ? RETURNING agent_id"
)
_BUMP = Statement(
    "UPDATE agents SET last_checkin_at = ? WHERE agent_id = ? AND last_checkin_at < ?"
)


@dataclass(eq=False, slots=True)
class Known:
    """An agent whose row is at a fixed point, as this process last wrote it."""

    agent_id: str
    credential: bytes
    secret_hash: str
    """What the row holds for the credential: a flush that finds anything else (revoked,
    rotated) forgets the agent, whether or not the wake channel told this process."""
    body: bytes
    state: bytes
    """:func:`state_digest` of the request (a few bytes: memory is per agent)."""
    telemetry: Telemetry
    policy_version: int
    servers: list[str]
    head: bytes
    """The reply up to its ``server_time`` value, ``tail`` after it up to the policy, and the
    policy's JSON (the bytes object of ``PolicyJson``, shared by every agent it serves)."""
    tail: bytes
    policy: bytes
    written: Any
    """``last_checkin_at`` as this process last bound it (the flush's guard)."""


@dataclass(slots=True)
class Pending:
    """The newest answered-from-memory check-in of an agent, not yet written."""

    known: Known
    stamp: Any
    telemetry: Telemetry


def split_reply(raw: bytes, server_time: datetime) -> tuple[bytes, bytes] | None:
    """``raw`` (a check-in reply, or its start) cut around its ``server_time`` value."""
    marker = _TIME_KEY + to_json(server_time)
    at = raw.find(marker)
    if at < 0:
        return None
    return raw[: at + len(_TIME_KEY)], raw[at + len(marker) :]


def state_digest(request: CheckinRequest) -> bytes:
    """A digest of everything in ``request`` but its telemetry: equal for two requests that
    differ in telemetry only."""
    state = request.__pydantic_serializer__.to_json(request, exclude=TELEMETRY)
    return hashlib.blake2b(state, digest_size=16).digest()


def telemetry_of(request: CheckinRequest) -> Telemetry:
    """The telemetry to write; raises ``BadRequest`` if a database could not store it (the
    rest of the request equals one that was checked and stored: see :func:`state_digest`)."""
    footprint = request.footprint
    if footprint is not None:
        check_int64(footprint.rss_bytes, "footprint.rss_bytes")
        check_finite(footprint.cpu_percent, "footprint.cpu_percent")
        check_int64(footprint.disk_bytes, "footprint.disk_bytes")
    check_int64(request.outbox_depth, "outbox_depth")
    check_int64(request.events_dropped, "events_dropped")
    return to_json(footprint).decode(), request.outbox_depth, request.events_dropped


class Liveness:
    """The agents this process may answer from memory, and their unwritten check-ins."""

    def __init__(self, db: Database, interval_s: float, max_agents: int = 250_000) -> None:
        self.db = db
        self.interval_s = interval_s
        self.max_agents = max_agents
        self.enabled = interval_s > 0
        self._known: dict[str, Known] = {}
        self._pending: dict[str, Pending] = {}
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0
        self.written = 0
        self.dropped = 0

    # --- what the fast path asks and tells -------------------------------------------------
    def get(self, agent_id: str, credential: bytes, policy_version: int) -> Known | None:
        known = self._known.get(agent_id)
        if known is None or known.policy_version < policy_version:
            return None
        if not hmac.compare_digest(known.credential, credential):
            return None
        return known

    def learn(self, known: Known | None, agent_id: str) -> None:
        """The check-in of ``agent_id`` was committed: remember it (``known``) or not (None)."""
        self._pending.pop(agent_id, None)  # that commit wrote a newer time and telemetry
        if known is None or not self.enabled:
            self._known.pop(agent_id, None)
            return
        if len(self._known) >= self.max_agents and agent_id not in self._known:
            return
        self._known[agent_id] = known

    def touch(self, known: Known, stamp: Any, telemetry: Telemetry) -> None:
        """An answered-from-memory check-in: write it with the next flush."""
        self._pending[known.agent_id] = Pending(known, stamp, telemetry)

    def forget(self, agent_ids: list[str] | None) -> None:
        """Drop these agents (None: all) from memory: their next check-in takes the full way.
        Their pending liveness is still written (guarded like any other)."""
        if agent_ids is None:
            self._known.clear()
            return
        for agent_id in agent_ids:
            self._known.pop(agent_id, None)

    # --- the flush ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the periodic flush and write what is pending (the server is stopping)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.flush()
            except Exception as exc:  # the database is away: keep the times, try again
                log.warning("liveness flush failed (%s); retrying", exc)

    async def flush(self) -> None:
        """Write every pending check-in in one transaction."""
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        try:
            stale = await self.db.run(write_pending, list(batch.values()))
        except BaseException:
            for agent_id, pending in batch.items():  # keep them, unless newer ones came
                self._pending.setdefault(agent_id, pending)
            raise
        self.flushes += 1
        self.written += len(batch) - len(stale)
        self.dropped += len(stale)
        for agent_id, pending in batch.items():
            known = pending.known
            if self._known.get(agent_id) is not known:
                continue  # committed again (or forgotten) meanwhile
            if agent_id in stale:
                del self._known[agent_id]
            else:
                known.written = pending.stamp


def write_pending(db: Database, batch: list[Pending]) -> set[str]:
    """Write ``batch`` (in agent order, as check-in groups lock rows); the agents whose row
    someone else wrote since this process did (they only get the newer time, in a second
    transaction, so that each one locks its rows in agent order)."""
    batch = sorted(batch, key=lambda pending: pending.known.agent_id)
    with db.write() as connection:
        driver = Driver(connection)
        if driver.postgres:
            driver.raw.execute("SET LOCAL synchronous_commit TO OFF")  # as check-ins do
        params = [
            (
                driver.timestamp(pending.stamp),
                *pending.telemetry,
                pending.known.agent_id,
                pending.known.written,
                pending.known.secret_hash,
            )
            for pending in batch
        ]
        written = _guarded(driver, params)
    stale = [param for param in params if param[4] not in written]
    if stale:
        with db.write() as connection:
            driver = Driver(connection)
            for param in stale:
                driver.execute(_BUMP, (param[0], param[4], param[0]))
    for pending, param in zip(batch, params, strict=True):
        pending.stamp = param[0]  # as bound: the guard of the next flush
    return {param[4] for param in stale}


def _guarded(driver: Driver, params: list[tuple[Any, ...]]) -> set[str]:
    if not driver.postgres:
        rows = [driver.raw.execute(_FLUSH.sqlite, p).fetchone() for p in params]
        return {row[0] for row in rows if row}
    written = set()
    with driver.raw.cursor() as cursor:
        cursor.executemany(_FLUSH.postgresql, params, returning=True)
        while True:
            row = cursor.fetchone()
            if row:
                written.add(row[0])
            if not cursor.nextset():
                break
    return written

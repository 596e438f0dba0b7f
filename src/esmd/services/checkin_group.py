"""Group commit of check-ins: the ones that arrive together share one transaction.

Each check-in request is queued and awaits its own outcome; a writer of the process takes
everything queued so far (up to ``max_group``) and runs it through
:func:`esmd.services.checkin.checkin_many`, so N concurrent check-ins cost one BEGIN, one
read of the N agents, one ``executemany`` and one COMMIT instead of N of each. Replies are
released only after the commit. While a group is being written (on the event loop for
SQLite, in a worker thread for PostgreSQL) the next requests queue up, so groups grow with
the load and a lone check-in still goes out at once. If a group fails as a whole (a database
error, not a refused call), each of its check-ins is retried alone, so one bad call can
never fail the others.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from esmd.db.engine import Database
from esmd.errors import ServiceError
from esmd.services.checkin import Call, Fixed, checkin_many
from esmd.services.policy import PolicyCache
from trapsapi.models import CheckinRequest, CheckinResponse

_Outcome = tuple[CheckinResponse, Any] | ServiceError


class CheckinGroups:
    """The check-in queue and writer of one process (see the module docstring)."""

    def __init__(
        self, db: Database, policies: PolicyCache, window: timedelta, max_group: int = 256
    ) -> None:
        self.db = db
        self.policies = policies
        self.window = window
        self.max_group = max_group
        self._queue: list[tuple[Call, asyncio.Future[_Outcome]]] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._running = 0
        self.max_writers = 1 if db.is_sqlite else 2
        """SQLite has one writer anyway; on PostgreSQL a second group overlaps the first's
        round trips (rows are locked in agent order, so two groups cannot deadlock)."""
        self.groups = 0
        """Transactions written (the mean group size is check-ins / groups)."""

    async def checkin(
        self, credential: str, request: CheckinRequest, servers: list[str]
    ) -> CheckinResponse:
        """The reply once this check-in is committed; raises its refusal (401, 409, 422)."""
        reply, _ = await self.checkin_fixed(credential, request, servers)
        return reply

    async def checkin_fixed(
        self, credential: str, request: CheckinRequest, servers: list[str]
    ) -> tuple[CheckinResponse, Any]:
        """The reply once committed, and the ``last_checkin_at`` written if the agent's row
        is now a fixed point (else None: see ``esmd.services.checkin.Fixed``)."""
        future: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        self._queue.append(((credential, request, servers), future))
        if self._running < self.max_writers:
            # It starts after the requests already read in this loop pass have queued too.
            # Counted when it stops, not by a done-callback: that runs a loop pass later, and
            # a check-in queued in between would find no writer coming (and wait forever).
            self._running += 1
            writer = asyncio.create_task(self._write())
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        outcome = await future
        if isinstance(outcome, ServiceError):
            raise outcome
        return outcome

    async def _write(self) -> None:
        try:
            while self._queue:
                group = self._queue[: self.max_group]
                del self._queue[: self.max_group]
                await self._commit(group)
                await asyncio.sleep(0)  # let the replies go and the next requests queue
        finally:
            self._running -= 1

    async def _commit(self, group: list[tuple[Call, asyncio.Future[_Outcome]]]) -> None:
        calls = [call for call, _ in group]
        self.groups += 1
        fixed: Fixed = {}
        try:
            outcomes = await self.db.run(checkin_many, self.policies, calls, self.window, fixed)
        except Exception as failure:
            if len(group) == 1:
                _settle(group[0][1], failure)
                return
            for one in group:  # alone, so that only the failing one fails
                await self._commit([one])
            return
        for index, ((_, future), outcome) in enumerate(zip(group, outcomes, strict=True)):
            if isinstance(outcome, ServiceError):
                _settle(future, outcome)
            else:
                _settle(future, (outcome, fixed.get(index)))


def _settle(future: asyncio.Future[_Outcome], outcome: _Outcome | BaseException) -> None:
    if future.done():  # its request was cancelled (the client went away)
        return
    if not isinstance(outcome, BaseException) or isinstance(outcome, ServiceError):
        future.set_result(outcome)
    else:
        future.set_exception(outcome)

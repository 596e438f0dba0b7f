"""Group commit of check-ins: concurrent check-ins share a transaction, and lose nothing.

On SQLite and PostgreSQL: every check-in's effect is stored exactly once under concurrency,
each call of a group gets its own outcome (401, 409, 422 do not fail the others), an agent
calling twice in one group sees its first call's effects, and a revocation applies to the
very next check-in, also one served by a second process on the same PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body

from esmd.db.engine import Database
from esmd.errors import BadRequest, Conflict, ServiceError, Unauthorized
from esmd.services import checkin_group
from esmd.services.checkin import checkin_many
from esmd.services.checkin_group import CheckinGroups
from esmd.services.policy import PolicyCache
from trapsapi import routes
from trapsapi.agent_client import AgentClient
from trapsapi.errors import AuthError
from trapsapi.models import CheckinRequest, CheckinResponse

WINDOW = timedelta(hours=1)


def _credential(agent: AgentClient) -> str:
    return f"{agent.agent_id}.{agent.secret}"  # type: ignore[attr-defined]


def _request(**overrides: Any) -> CheckinRequest:
    return CheckinRequest.model_validate(checkin_body(**overrides))


def test_concurrent_checkins_over_http_are_all_stored_once(esm: Esm) -> None:
    agents = [esm.enroll(f"host-{n:02d}") for n in range(12)]
    rounds = 6
    failures: list[BaseException] = []

    def run(n: int, agent: AgentClient) -> None:
        try:
            for r in range(rounds):
                body = checkin_body(hostname=f"host-{n:02d}", outbox_depth=r, events_dropped=n)
                assert agent.checkin(body)["agent_id"] == agent.agent_id
        except BaseException as failure:  # reported by the main thread
            failures.append(failure)

    threads = [threading.Thread(target=run, args=(n, a)) for n, a in enumerate(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    expected = {a.agent_id: (rounds - 1, n, f"host-{n:02d}") for n, a in enumerate(agents)}
    deadline = time.monotonic() + 5  # outbox depths are written behind (docs/scaling.md)
    while True:
        rows = esm.sql("SELECT agent_id, outbox_depth, events_dropped, hostname FROM agents")
        stored = {
            row.agent_id: (row.outbox_depth, row.events_dropped, row.hostname) for row in rows
        }
        if stored == expected or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert stored == expected


def test_the_same_agents_checking_in_from_many_threads_never_fail(esm: Esm) -> None:
    """Overlapping groups that touch the same agents in different orders (two writers on
    PostgreSQL) must neither deadlock nor lose a check-in."""
    agents = [esm.enroll(f"shared-{n}") for n in range(8)]
    clients = [
        [AgentClient([esm.url], a.agent_id, a.secret) for a in agents]  # type: ignore[attr-defined]
        for _ in range(6)
    ]
    failures: list[BaseException] = []
    served = [0] * len(clients)  # per thread: no shared counter to race on

    def run(seed: int) -> None:
        order = random.Random(seed)
        try:
            for _ in range(4):
                mine = list(clients[seed])
                order.shuffle(mine)
                for client in mine:
                    client.checkin(checkin_body(outbox_depth=seed))
                    served[seed] += 1
        except BaseException as failure:  # reported by the main thread
            failures.append(failure)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for mine in clients:
        for client in mine:
            client.close()
    assert not failures and served == [4 * len(agents)] * len(clients)
    depths = esm.sql("SELECT outbox_depth FROM agents WHERE last_checkin_at IS NOT NULL").all()
    assert len(depths) == len(agents)
    assert {row[0] for row in depths} <= set(range(len(clients)))


def test_one_group_gives_each_call_its_own_outcome(esm: Esm) -> None:
    good, revoked, cloned, twice = (esm.enroll(f"h{n}") for n in range(4))
    esm.admin._call("POST", f"{routes.AGENTS}/{revoked.agent_id}/revoke")
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    cloned.checkin(checkin_body(instance_id=first))
    cloned.checkin(checkin_body(instance_id=second))  # first replaced by second
    servers = ["http://esm:2125"]
    calls = [
        (_credential(good), _request(outbox_depth=3), servers),
        (_credential(revoked), _request(), servers),
        (f"{good.agent_id}.wrong-secret", _request(), servers),
        (_credential(cloned), _request(instance_id=first), servers),  # the old copy is back
        (_credential(twice), _request(hostname="renamed", instance_id=first), servers),
        (_credential(good), _request(hostname="nul\x00"), servers),
        (_credential(twice), _request(hostname="renamed", instance_id=second), servers),
        ("not-a-credential", _request(), servers),
    ]
    db = Database.from_url(esm.settings.url)
    try:
        outcomes = checkin_many(db, PolicyCache(3600), calls, WINDOW)
    finally:
        db.dispose()
    kinds = [type(outcome) for outcome in outcomes]
    assert kinds == [
        CheckinResponse,
        Unauthorized,
        Unauthorized,
        Conflict,
        CheckinResponse,
        BadRequest,
        CheckinResponse,
        Unauthorized,
    ]
    assert "revoked" in str(outcomes[1])
    reply = outcomes[0]
    assert isinstance(reply, CheckinResponse)
    assert reply.agent_id == good.agent_id and reply.servers == servers
    row = esm.sql(
        "SELECT outbox_depth, hostname FROM agents WHERE agent_id = :a", a=good.agent_id
    ).one()
    assert tuple(row) == (3, "web-01")  # the refused NUL call of the same agent wrote nothing
    flagged = esm.sql(
        "SELECT identity_conflict_at FROM agents WHERE agent_id = :a", a=cloned.agent_id
    ).scalar_one()
    assert flagged is not None  # the clone flag is committed with the group
    # The second call of the same agent ran after the first (a round of its own): it saw the
    # instance the first one set and replaced it, so it is no clone.
    row = esm.sql(
        "SELECT instance_id, previous_instance_id, hostname FROM agents WHERE agent_id = :a",
        a=twice.agent_id,
    ).one()
    assert tuple(row) == (second, first, "renamed")


def test_concurrent_checkins_are_grouped_into_few_transactions(esm: Esm) -> None:
    agents = [esm.enroll(f"g{n}") for n in range(30)]
    db = Database.from_url(esm.settings.url)
    groups = CheckinGroups(db, PolicyCache(3600), WINDOW)

    async def all_at_once() -> list[CheckinResponse | BaseException]:
        calls = [
            groups.checkin(_credential(a), _request(outbox_depth=n), ["http://esm"])
            for n, a in enumerate(agents)
        ]
        calls.append(groups.checkin("bad.credential", _request(), ["http://esm"]))
        return await asyncio.gather(*calls, return_exceptions=True)

    try:
        outcomes = asyncio.run(all_at_once())
    finally:
        db.dispose()
    assert [getattr(o, "agent_id", None) for o in outcomes[:-1]] == [a.agent_id for a in agents]
    assert isinstance(outcomes[-1], Unauthorized)
    assert groups.groups == 1  # 31 check-ins, one transaction
    depths = dict(esm.sql("SELECT agent_id, outbox_depth FROM agents").all())
    assert depths == {a.agent_id: n for n, a in enumerate(agents)}


def test_a_failing_group_is_retried_call_by_call(esm: Esm, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database error in a group fails only the call that causes it (here: one agent's
    call is made to fail inside the real transaction, which rolls the group back)."""
    ok, broken = esm.enroll("ok"), esm.enroll("broken")
    real = checkin_group.checkin_many

    def failing(db: Database, policies: PolicyCache, calls: Any, window: Any, *rest: Any) -> Any:
        with db.write():
            pass  # a real transaction, as the real function opens
        if any(call[0] == _credential(broken) for call in calls):
            raise RuntimeError("disk I/O error")
        return real(db, policies, calls, window, *rest)

    monkeypatch.setattr(checkin_group, "checkin_many", failing)
    db = Database.from_url(esm.settings.url)
    groups = CheckinGroups(db, PolicyCache(3600), WINDOW)

    async def both() -> list[Any]:
        return await asyncio.gather(
            groups.checkin(_credential(ok), _request(outbox_depth=9), []),
            groups.checkin(_credential(broken), _request(outbox_depth=9), []),
            return_exceptions=True,
        )

    try:
        good, bad = asyncio.run(both())
    finally:
        db.dispose()
    assert isinstance(good, CheckinResponse) and good.agent_id == ok.agent_id
    assert isinstance(bad, RuntimeError) and not isinstance(bad, ServiceError)
    assert groups.groups == 3  # the group, then each call alone
    depths = dict(esm.sql("SELECT agent_id, outbox_depth FROM agents").all())
    assert depths == {ok.agent_id: 9, broken.agent_id: 0}


def test_revocation_applies_to_the_next_checkin_on_every_process(esm: Esm, live_esm: Any) -> None:
    """A second esmd on the same database (PostgreSQL; on SQLite a second app on the same
    file) that answers the agent from memory (esmd.services.liveness) refuses it once the
    revocation made through the first one reaches it: through LISTEN on PostgreSQL, and in
    any case at its next liveness flush (within a second or two); the first process refuses
    the very next check-in."""
    from esmd.app import create_app

    agent = esm.enroll("two-servers")
    with type(live_esm)(create_app(esm.settings)) as other:
        there = AgentClient([other.url], agent.agent_id, agent.secret)  # type: ignore[attr-defined]
        try:
            for _ in range(3):  # the third is answered from memory there
                there.checkin(checkin_body())
            esm.admin._call("POST", f"{routes.AGENTS}/{agent.agent_id}/revoke")
            with pytest.raises(AuthError):
                agent.checkin(checkin_body())
            deadline = time.monotonic() + 4
            with pytest.raises(AuthError):
                while time.monotonic() < deadline:
                    there.checkin(checkin_body())
                    time.sleep(0.05)
        finally:
            there.close()


def test_a_checkin_queued_as_the_writer_stops_is_still_written(esm: Esm) -> None:
    """The writer that just emptied the queue is gone before its done-callback runs: a
    check-in queued in that loop pass must start a writer of its own, not wait forever."""
    agent = esm.enroll("alone")
    db = Database.from_url(esm.settings.url)
    groups = CheckinGroups(db, PolicyCache(3600), WINDOW)

    async def one_after_another() -> None:
        for n in range(30):
            for _ in range(n % 3):
                await asyncio.sleep(0)  # land at each point of the writer's last steps
            async with asyncio.timeout(5):  # no task of its own: the timing stays as is
                await groups.checkin(_credential(agent), _request(outbox_depth=n), [])

    try:
        asyncio.run(one_after_another())
    finally:
        db.dispose()

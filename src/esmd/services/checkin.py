"""The check-in hot path: group commit, fixed SQL on the driver, the policy from the cache.

Check-ins that arrive together are handled in one transaction (``checkin_many``, fed by
``esmd.services.checkin_group``): one statement reads the calling agents (secret hashes,
policy version, labels and group, instance, a pending credential rotation), one
``executemany`` updates their status (the UPDATE also returns whether actions are pending:
no extra statement when there are none), one commit. Each reply carries the cached policy
of that version for the agent's targets and its pending actions, and is sent only after the
commit. The SQL runs on the driver (``esmd.db.driver``): a Core ``execute`` would cost more
than the statement itself. The secret is checked against the row read in the same
transaction on every call (a SHA-256, ~1 µs), so a revocation or rotation committed before
a check-in's group began applies to it, in every process. A check-in that only repeats the
last one may be answered from memory instead (``esmd.services.liveness``, which this
module's ``Fixed`` feeds; revocations reach it through the wake channel). This is the place the
check-in logic lives (the FastAPI route and the ASGI fast path both end here).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic_core import to_json
from sqlalchemy import Connection

from esmd.db.driver import Driver, Statement
from esmd.db.engine import Database
from esmd.errors import Conflict, ServiceError, Unauthorized
from esmd.services.action_delivery import deliver
from esmd.services.agents import (
    AUTH_COLUMNS,
    AgentIdentity,
    identity_of,
    parse_agent_credential,
)
from esmd.services.policy import POLICY_ROW, PolicyCache
from esmd.services.policy_resolve import Target
from esmd.services.storable import check_storable
from esmd.services.wake import credentials_changed
from esmd.timeutil import utcnow
from trapsapi.enums import Mode
from trapsapi.models import AgentPolicy, CheckinRequest, CheckinResponse

ISSUE_CONFLICT = "identity used by two live agents (a cloned machine?)"
CONFLICT_DETAIL = (
    "another live agent uses this identity (a cloned machine?): "
    "enroll this one again with a new token"
)
DEFAULT_WINDOW = timedelta(hours=1)
_READ_AGENTS = (
    f"SELECT agent_id, {', '.join(AUTH_COLUMNS[:-1])},"
    f" (SELECT version FROM policy_state WHERE id = {POLICY_ROW})"
    " FROM agents WHERE agent_id "
)
_READ_AGENTS_PG = _READ_AGENTS + "= ANY(%s)"
_TIMES = {"instance_changed_at", "identity_conflict_at"}
_STATUS_COLUMNS = (
    "hostname",
    "os",
    "os_version",
    "agent_version",
    "ips",
    "modules",
    "footprint",
    "policy_version",
    "outbox_depth",
    "events_dropped",
    "last_checkin_at",
    "instance_id",
    "previous_instance_id",
    "instance_changed_at",
    "identity_conflict_at",
    "stopped_at",
    "issues",
)
# SET reads the old row: what the agent reports now should be what it was served last time.
_UPDATE_STATUS = Statement(
    "UPDATE agents SET "
    + ", ".join(f"{name} = ?" for name in _STATUS_COLUMNS)
    + ", policy_expected_version = policy_served_version, policy_served_version = ?"
    " WHERE agent_id = ? RETURNING EXISTS (SELECT 1 FROM action_agents"
    " WHERE action_agents.agent_id = agents.agent_id AND action_agents.state = 'pending'),"
    " policy_expected_version"
)
_MARK_CONFLICT = Statement(
    "UPDATE agents SET identity_conflict_at = ?, issues = ? WHERE agent_id = ?"
)
_FINISH_ROTATION = Statement(
    "UPDATE agents SET secret_hash = next_secret_hash, next_secret_hash = NULL WHERE agent_id = ?"
)
# psycopg binds a str as "unknown", which PostgreSQL casts to the json columns by itself.
Call = tuple[str, CheckinRequest, list[str]]
"""One check-in: (credential, request, the server list for the reply)."""
Fixed = dict[int, Any]
"""Index of a call → the ``last_checkin_at`` it wrote (as bound), for the calls whose row is
now a fixed point: the same request again would change nothing but ``last_checkin_at`` (no
pending action, no rotation, not stopping, no clone flag in its window, and the policy it
was served is the one it was served before). ``esmd.services.liveness`` answers those
repeats without a transaction."""


def _instance(
    agent: AgentIdentity, request: CheckinRequest, now: datetime, window: timedelta
) -> tuple[list[Any], bool]:
    """(instance_id, previous_instance_id, instance_changed_at, identity_conflict_at) after
    this check-in, and whether it comes from a second live copy of the identity: the
    instance this one replaced, back again within ``window``."""
    current = [
        agent.instance_id,
        agent.previous_instance_id,
        agent.instance_changed_at,
        agent.identity_conflict_at,
    ]
    instance = request.instance_id
    if instance is None or instance == agent.instance_id:
        return current, False
    if agent.instance_id is None:
        return [instance, *current[1:]], False
    changed = agent.instance_changed_at
    if instance == agent.previous_instance_id and changed is not None and now - changed < window:
        return [*current[:3], now], True
    return [instance, agent.instance_id, now, agent.identity_conflict_at], False


def issues_of(
    request: CheckinRequest, conflict_at: datetime | None, now: datetime, window: timedelta
) -> list[str]:
    """Why a connected agent is degraded (empty: it is not; policy drift is added on read)."""
    issues = [
        f"module {m.name} unhealthy" + (f": {m.detail}" if m.detail else "")
        for m in request.modules
        if m.enabled and m.mode != Mode.OFF and not m.healthy
    ]
    if conflict_at is not None and now - conflict_at < window:
        issues.append(ISSUE_CONFLICT)
    return issues


def checkin(
    db: Database,
    policies: PolicyCache,
    credential: str,
    request: CheckinRequest,
    servers: list[str],
    window: timedelta = DEFAULT_WINDOW,
) -> CheckinResponse:
    """One check-in in a transaction of its own (see :func:`checkin_many`)."""
    [outcome] = checkin_many(db, policies, [(credential, request, servers)], window)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def checkin_many(
    db: Database,
    policies: PolicyCache,
    calls: Sequence[Call],
    window: timedelta = DEFAULT_WINDOW,
    fixed: Fixed | None = None,
) -> list[CheckinResponse | ServiceError]:
    """Check-ins ``(credential, request, servers)`` in one transaction (group commit).

    Each call gets its reply or its refusal (401, 409, 422): a refused call writes nothing
    before it is refused, except the clone flag, which is meant to stay. The agents are read
    with one statement and updated with one ``executemany``; an agent that calls twice in
    one group is handled in a second round, so it sees its first call's effects. Anything
    else failing rolls the whole group back and raises. ``window``: how long a replaced
    agent instance counts as possibly still alive (the heartbeat interval plus its grace).
    ``fixed``, if given, is filled as :data:`Fixed` says.
    """
    now = utcnow()
    outcomes: list[CheckinResponse | ServiceError | None] = [None] * len(calls)
    valid: list[tuple[int, str, str]] = []
    for index, (credential, request, _) in enumerate(calls):
        try:
            check_storable(request)
            agent_id, secret = parse_agent_credential(credential)
        except ServiceError as refusal:
            outcomes[index] = refusal
            continue
        valid.append((index, agent_id, secret))
    if valid:
        with db.write() as connection:
            driver = Driver(connection)
            if driver.postgres:
                # A check-in is a heartbeat: the next one repeats it, so it need not wait for
                # the WAL flush (a crash can lose at most the last ~0.6 s of them).
                driver.raw.execute("SET LOCAL synchronous_commit TO OFF")
            for group in _rounds(valid):  # in the same transaction, one after the other
                _checkin_round(
                    connection, driver, policies, calls, group, outcomes, now, window, fixed
                )
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(calls), "a check-in of the group got no outcome"
    return done


def _rounds(valid: list[tuple[int, str, str]]) -> Iterator[list[tuple[int, str, str]]]:
    """``valid`` in order, split so that no agent appears twice in one round."""
    while valid:
        seen: set[str] = set()
        group: list[tuple[int, str, str]] = []
        later: list[tuple[int, str, str]] = []
        for call in valid:
            (later if call[1] in seen else group).append(call)
            seen.add(call[1])
        yield group
        valid = later


def _checkin_round(
    connection: Connection,
    driver: Driver,
    policies: PolicyCache,
    calls: Sequence[Call],
    group: list[tuple[int, str, str]],
    outcomes: list[CheckinResponse | ServiceError | None],
    now: datetime,
    window: timedelta,
    fixed: Fixed | None = None,
) -> None:
    """Check in ``group`` (distinct agents), setting their ``outcomes`` (and ``fixed``)."""
    rows = _read_agents(driver, [agent_id for _, agent_id, _ in group])
    served: list[tuple[int, str, AgentPolicy, bool]] = []
    params: list[tuple[Any, ...]] = []
    stamp = driver.timestamp(now)
    # In agent order: concurrent groups (PostgreSQL) then lock their rows in the same order.
    for index, agent_id, secret in sorted(group, key=lambda call: call[1]):
        request = calls[index][1]
        try:
            agent = identity_of(agent_id, secret, rows.get(agent_id))
        except Unauthorized as refusal:
            outcomes[index] = refusal
            continue
        if agent.rotated:
            driver.execute(_FINISH_ROTATION, (agent_id,))
            credentials_changed(connection, agent_id)  # the old secret dies in every process
        instance, conflict = _instance(agent, request, now, window)
        if conflict:  # the flag is committed with the group, for admins to see
            marked = (stamp, driver.json([ISSUE_CONFLICT]), agent_id)
            driver.execute(_MARK_CONFLICT, marked)
            outcomes[index] = Conflict(CONFLICT_DETAIL)
            continue
        target = Target(request.hostname, request.os, agent.labels, agent.group)
        policy = policies.get(connection, agent.current_policy_version, target)
        flagged = instance[3] is not None and now - instance[3] < window
        steady = not request.stopping and not flagged
        served.append((index, agent_id, policy, steady))
        params.append(_status(driver, agent, request, instance, policy, now, stamp, window))
    pending = _update_status(driver, params)
    for (index, agent_id, policy, steady), (has_actions, expected) in zip(
        served, pending, strict=True
    ):
        if fixed is not None and steady and not has_actions and expected == policy.version:
            fixed[index] = stamp
        outcomes[index] = CheckinResponse(
            agent_id=agent_id,
            server_time=now,
            policy=policy,
            actions=deliver(connection, agent_id, now) if has_actions else [],
            servers=calls[index][2],
        )


def _read_agents(driver: Driver, agent_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The authentication rows of ``agent_ids`` (absent: unknown agent), in one statement."""
    if driver.postgres:
        cursor = driver.raw.execute(_READ_AGENTS_PG, (agent_ids,))
    else:
        marks = ",".join("?" * len(agent_ids))
        cursor = driver.raw.execute(f"{_READ_AGENTS}IN ({marks})", agent_ids)
    rows = {}
    for values in cursor.fetchall():
        row = dict(zip(AUTH_COLUMNS, values[1:], strict=True))
        for name in _TIMES:
            row[name] = driver.read_timestamp(row[name])
        row["labels"] = driver.read_json(row["labels"])
        rows[values[0]] = row
    return rows


def _status(
    driver: Driver,
    agent: AgentIdentity,
    request: CheckinRequest,
    instance: list[Any],
    policy: AgentPolicy,
    now: datetime,
    stamp: Any,
    window: timedelta,
) -> tuple[Any, ...]:
    """The parameters of :data:`_UPDATE_STATUS` for this check-in (``stamp``: ``now`` bound)."""
    return (
        request.hostname,
        request.os,
        request.os_version,
        request.agent_version,
        to_json(request.ips).decode(),  # what ``driver.json`` of their JSON form gives,
        to_json(request.modules).decode(),  # from pydantic's serialiser: a few times faster
        to_json(request.footprint).decode(),
        request.policy_version,
        request.outbox_depth,
        request.events_dropped,
        stamp,
        instance[0],
        instance[1],
        driver.timestamp(instance[2]) if instance[2] else None,
        driver.timestamp(instance[3]) if instance[3] else None,
        stamp if request.stopping else None,
        driver.json(issues_of(request, instance[3], now, window)),
        policy.version,
        agent.agent_id,
    )


def _update_status(driver: Driver, params: list[tuple[Any, ...]]) -> list[tuple[bool, int | None]]:
    """Run :data:`_UPDATE_STATUS` for each of ``params``: whether actions are pending (False
    for an agent deleted meanwhile) and the policy version now expected of the agent.
    PostgreSQL gets them in one pipelined ``executemany``."""
    if not params:
        return []
    if not driver.postgres:
        rows = [driver.raw.execute(_UPDATE_STATUS.sqlite, p).fetchone() for p in params]
        return [(bool(row[0]), row[1]) if row else (False, None) for row in rows]
    pending = []
    with driver.raw.cursor() as cursor:
        cursor.executemany(_UPDATE_STATUS.postgresql, params, returning=True)
        while True:
            row = cursor.fetchone()
            pending.append((bool(row[0]), row[1]) if row else (False, None))
            if not cursor.nextset():
                break
    return pending

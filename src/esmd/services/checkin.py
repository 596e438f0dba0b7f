"""The check-in hot path: one transaction, fixed SQL on the driver, the policy from the cache.

Authenticate (a primary-key lookup that also reads the policy version, the agent's labels
and group, its instance and a pending credential rotation), update the agent's status (the
UPDATE also returns whether actions are pending: no extra statement when there are none),
answer with the cached policy of that version for the agent's targets and its pending
actions. The SQL runs on the driver (``esmd.db.driver``): a Core ``execute`` would cost more
than the statement itself. This function is the one place the check-in logic lives (the
FastAPI route and the ASGI fast path both call it).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from esmd.db.driver import Driver, Statement
from esmd.db.engine import Database
from esmd.errors import Conflict
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
from esmd.timeutil import utcnow
from trapsapi.enums import Mode
from trapsapi.models import CheckinRequest, CheckinResponse

ISSUE_CONFLICT = "identity used by two live agents (a cloned machine?)"
DEFAULT_WINDOW = timedelta(hours=1)
_AUTHENTICATE = Statement(
    f"SELECT {', '.join(AUTH_COLUMNS[:-1])},"
    f" (SELECT version FROM policy_state WHERE id = {POLICY_ROW})"
    " FROM agents WHERE agent_id = ?"
)
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
    " WHERE action_agents.agent_id = agents.agent_id AND action_agents.state = 'pending')"
)
_MARK_CONFLICT = Statement(
    "UPDATE agents SET identity_conflict_at = ?, issues = ? WHERE agent_id = ?"
)
_FINISH_ROTATION = Statement(
    "UPDATE agents SET secret_hash = next_secret_hash, next_secret_hash = NULL WHERE agent_id = ?"
)
# psycopg binds a str as "unknown", which PostgreSQL casts to the json columns by itself.


def authenticate(driver: Driver, credential: str) -> AgentIdentity:
    """:func:`esmd.services.agents.authenticate` on the driver (same checks, same rules)."""
    agent_id, secret = parse_agent_credential(credential)
    values = driver.one(_AUTHENTICATE, (agent_id,))
    row: dict[str, Any] | None = None
    if values is not None:
        row = dict(zip(AUTH_COLUMNS, values, strict=True))
        for name in _TIMES:
            row[name] = driver.read_timestamp(row[name])
        row["labels"] = driver.read_json(row["labels"])
    agent = identity_of(agent_id, secret, row)
    if agent.rotated:
        driver.execute(_FINISH_ROTATION, (agent_id,))
    return agent


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
    """``window``: how long a replaced agent instance counts as possibly still alive (the
    heartbeat interval plus its grace)."""
    check_storable(request)
    now = utcnow()
    footprint = request.footprint.model_dump(mode="json") if request.footprint else None
    actions: list[dict[str, Any]] = []
    with db.write() as connection:
        driver = Driver(connection)
        if driver.postgres:
            # A check-in is a heartbeat: the next one repeats it, so it need not wait for the
            # WAL flush (a crash can lose at most the last ~0.6 s of them; nothing else).
            driver.raw.execute("SET LOCAL synchronous_commit TO OFF")
        agent = authenticate(driver, credential)
        instance, conflict = _instance(agent, request, now, window)
        if conflict:
            params = (driver.timestamp(now), driver.json([ISSUE_CONFLICT]), agent.agent_id)
            driver.execute(_MARK_CONFLICT, params)
        else:
            target = Target(request.hostname, request.os, agent.labels, agent.group)
            policy = policies.get(connection, agent.current_policy_version, target)
            issues = issues_of(request, instance[3], now, window)
            pending = driver.one(
                _UPDATE_STATUS,
                (
                    request.hostname,
                    request.os,
                    request.os_version,
                    request.agent_version,
                    driver.json(list(request.ips)),
                    driver.json([m.model_dump(mode="json") for m in request.modules]),
                    driver.json(footprint),
                    request.policy_version,
                    request.outbox_depth,
                    request.events_dropped,
                    driver.timestamp(now),
                    instance[0],
                    instance[1],
                    driver.timestamp(instance[2]) if instance[2] else None,
                    driver.timestamp(instance[3]) if instance[3] else None,
                    driver.timestamp(now) if request.stopping else None,
                    driver.json(issues),
                    policy.version,
                    agent.agent_id,
                ),
            )
            if pending is not None and pending[0]:
                actions = deliver(connection, agent.agent_id, now)
    if conflict:  # after the commit, so the flag stays for admins to see
        raise Conflict(
            "another live agent uses this identity (a cloned machine?): "
            "enroll this one again with a new token"
        )
    return CheckinResponse(
        agent_id=agent.agent_id,
        server_time=now,
        policy=policy,
        actions=actions,
        servers=servers,
    )

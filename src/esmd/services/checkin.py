"""The check-in hot path: one transaction, one Core UPDATE, the policy from the cache.

The statements are built once at import and executed with parameters, so a check-in pays
no statement construction: authenticate (a primary-key lookup that also reads the policy
version and the agent's labels and group), update the agent's status (the UPDATE also returns
whether actions are pending: no extra statement when there are none), answer with the cached
policy of that version for the agent's targets (hostname, OS, labels, group) and the agent's
pending actions.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, update

from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.errors import Conflict
from esmd.services.action_delivery import HAS_PENDING, deliver
from esmd.services.agents import AgentIdentity, authenticate, finish_rotation
from esmd.services.policy import PolicyCache
from esmd.services.policy_resolve import Target
from esmd.services.storable import check_storable
from esmd.timeutil import utcnow
from trapsapi.enums import Mode
from trapsapi.models import CheckinRequest, CheckinResponse

ISSUE_CONFLICT = "identity used by two live agents (a cloned machine?)"
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
_UPDATE_STATUS = (
    update(AGENTS)
    .where(AGENTS.c.agent_id == bindparam("b_agent_id"))
    .values({name: bindparam(f"b_{name}") for name in _STATUS_COLUMNS})
    # What it reports now should be what it was served last time (SET reads the old row).
    .values(
        policy_expected_version=AGENTS.c.policy_served_version,
        policy_served_version=bindparam("b_served"),
    )
    .returning(HAS_PENDING)  # no extra round trip when nothing is pending
)

_MARK_CONFLICT = (
    update(AGENTS)
    .where(AGENTS.c.agent_id == bindparam("b_agent_id"))
    .values(identity_conflict_at=bindparam("b_at"), issues=[ISSUE_CONFLICT])
)


def _instance(
    agent: AgentIdentity, request: CheckinRequest, now: datetime, window: timedelta
) -> tuple[dict[str, Any], bool]:
    """The instance columns after this check-in, and whether it comes from a second live
    copy of the identity: the instance this one replaced, back again within ``window``."""
    current = {
        "b_instance_id": agent.instance_id,
        "b_previous_instance_id": agent.previous_instance_id,
        "b_instance_changed_at": agent.instance_changed_at,
        "b_identity_conflict_at": agent.identity_conflict_at,
    }
    instance = request.instance_id
    if instance is None or instance == agent.instance_id:
        return current, False
    if agent.instance_id is None:
        return {**current, "b_instance_id": instance}, False
    changed = agent.instance_changed_at
    if instance == agent.previous_instance_id and changed is not None and now - changed < window:
        return {**current, "b_identity_conflict_at": now}, True
    replaced = {"b_previous_instance_id": agent.instance_id, "b_instance_changed_at": now}
    return {**current, **replaced, "b_instance_id": instance}, False


def issues_of(
    request: CheckinRequest, conflict_at: datetime | None, now: datetime, window: timedelta
) -> list[str]:
    """Why a connected agent is degraded (empty: it is not)."""
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
    window: timedelta = timedelta(hours=1),
) -> CheckinResponse:
    """``window``: how long a replaced agent instance counts as possibly still alive."""
    check_storable(request)
    now = utcnow()
    params = {
        "b_hostname": request.hostname,
        "b_os": request.os,
        "b_os_version": request.os_version,
        "b_agent_version": request.agent_version,
        "b_ips": list(request.ips),
        "b_modules": [m.model_dump(mode="json") for m in request.modules],
        "b_footprint": request.footprint.model_dump(mode="json") if request.footprint else None,
        "b_policy_version": request.policy_version,
        "b_outbox_depth": request.outbox_depth,
        "b_events_dropped": request.events_dropped,
        "b_last_checkin_at": now,
    }
    with db.write() as connection:
        if connection.dialect.name == "postgresql":
            # A check-in is a heartbeat: the next one repeats it, so it need not wait for the
            # WAL flush (a crash can lose at most the last ~0.6 s of them; nothing else).
            connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        agent = authenticate(connection, credential)
        finish_rotation(connection, agent)
        instance, conflict = _instance(agent, request, now, window)
        if conflict:
            connection.execute(_MARK_CONFLICT, {"b_agent_id": agent.agent_id, "b_at": now})
        else:
            target = Target(request.hostname, request.os, agent.labels, agent.group)
            policy = policies.get(connection, agent.current_policy_version, target)
            params["b_issues"] = issues_of(request, instance["b_identity_conflict_at"], now, window)
            params["b_stopped_at"] = now if request.stopping else None
            pending = connection.execute(
                _UPDATE_STATUS,
                {"b_agent_id": agent.agent_id, "b_served": policy.version, **params, **instance},
            )
            actions = deliver(connection, agent.agent_id, now) if pending.scalar() else []
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

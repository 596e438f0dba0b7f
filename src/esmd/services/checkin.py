"""The check-in hot path: one transaction, one Core UPDATE, the policy from the cache.

The statements are built once at import and executed with parameters, so a check-in pays
no statement construction: authenticate (a primary-key lookup that also reads the policy
version), update the agent's status, answer with the cached policy of that version and the
agent's pending actions (an indexed EXISTS returned by the UPDATE: no extra statement when
there are none).
"""

from __future__ import annotations

from sqlalchemy import bindparam, update

from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.services.action_delivery import HAS_PENDING, deliver
from esmd.services.agents import authenticate
from esmd.services.policy import PolicyCache
from esmd.services.storable import check_storable
from esmd.timeutil import utcnow
from trapsapi.models import CheckinRequest, CheckinResponse

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
)
_UPDATE_STATUS = (
    update(AGENTS)
    .where(AGENTS.c.agent_id == bindparam("b_agent_id"))
    .values({name: bindparam(f"b_{name}") for name in _STATUS_COLUMNS})
    .returning(HAS_PENDING)  # no extra round trip when nothing is pending
)


def checkin(
    db: Database,
    policies: PolicyCache,
    credential: str,
    request: CheckinRequest,
    servers: list[str],
) -> CheckinResponse:
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
        policy = policies.get(connection, agent.current_policy_version)
        pending = connection.execute(_UPDATE_STATUS, {"b_agent_id": agent.agent_id, **params})
        actions = deliver(connection, agent.agent_id, now) if pending.scalar() else []
    return CheckinResponse(
        agent_id=agent.agent_id,
        server_time=now,
        policy=policy,
        actions=actions,
        servers=servers,
    )

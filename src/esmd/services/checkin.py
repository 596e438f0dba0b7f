"""The check-in hot path: one transaction, two driver-level statements, the policy cached.

Authenticate (a primary-key lookup that also reads the policy version), update the agent's
status, answer with the cached policy of that version. The SQL is fixed text run on the
driver (``esmd.db.driver``): a Core ``execute`` would cost more than the statement itself.
This function is the one place the check-in logic lives (the FastAPI route and the ASGI
fast path both call it).
"""

from __future__ import annotations

from esmd.db.driver import Driver, Statement
from esmd.db.engine import Database
from esmd.errors import Unauthorized
from esmd.security import token_matches
from esmd.services.agents import AgentIdentity, parse_agent_credential
from esmd.services.policy import POLICY_ROW, PolicyCache
from esmd.services.storable import check_storable
from esmd.timeutil import utcnow
from trapsapi.models import CheckinRequest, CheckinResponse

_NO_HASH = "0" * 64
_AUTHENTICATE = Statement(
    "SELECT secret_hash, hostname,"
    f" (SELECT version FROM policy_state WHERE id = {POLICY_ROW})"
    " FROM agents WHERE agent_id = ?"
)
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
_JSON_COLUMNS = {"ips", "modules", "footprint"}
_UPDATE_STATUS = Statement(
    "UPDATE agents SET "
    + ", ".join(f"{name} = ?" for name in _STATUS_COLUMNS)
    + " WHERE agent_id = ?"
)
# psycopg binds a str as "unknown", which PostgreSQL casts to the json columns by itself.


def authenticate(driver: Driver, credential: str) -> AgentIdentity:
    """The agent behind ``<agent_id>.<secret>``, checked in constant time, or Unauthorized."""
    agent_id, secret = parse_agent_credential(credential)
    row = driver.one(_AUTHENTICATE, (agent_id,))
    # Compare even for unknown agents, so timing does not tell which agent IDs exist.
    matches = token_matches(secret, row[0] if row is not None else _NO_HASH)
    if row is None or not matches:
        raise Unauthorized("invalid agent credential")
    return AgentIdentity(agent_id, row[1], int(row[2] or 0))


def checkin(
    db: Database,
    policies: PolicyCache,
    credential: str,
    request: CheckinRequest,
    servers: list[str],
) -> CheckinResponse:
    check_storable(request)
    now = utcnow()
    footprint = request.footprint.model_dump(mode="json") if request.footprint else None
    with db.write() as connection:
        driver = Driver(connection)
        if driver.postgres:
            # A check-in is a heartbeat: the next one repeats it, so it need not wait for the
            # WAL flush (a crash can lose at most the last ~0.6 s of them; nothing else).
            driver.raw.execute("SET LOCAL synchronous_commit TO OFF")
        agent = authenticate(driver, credential)
        policy = policies.get(connection, agent.current_policy_version)
        driver.execute(
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
                agent.agent_id,
            ),
        )
    return CheckinResponse(
        agent_id=agent.agent_id,
        server_time=now,
        policy=policy,
        actions=[],
        servers=servers,
    )

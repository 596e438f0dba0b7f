"""What a woken long-poll carries: the agent's new policy and its pending actions.

Read and marked for a whole batch of woken agents in one transaction (one SELECT of the
pending actions, one UPDATE per outcome, one UPDATE recording the policy version served),
so a broadcast to 10,000 waiters costs ~10 transactions, not 10,000 check-ins. The version
served is recorded as a check-in would, so the agent's next check-in, reporting the version
it applied, shows no drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update

from esmd.db.driver import Driver, Statement
from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.db.tables_actions import ACTION_AGENTS
from esmd.services.action_delivery import deliver_many
from esmd.services.agents import AUTH_COLUMNS, AgentIdentity, identity_of, parse_agent_credential
from esmd.services.policy import POLICY_ROW, PolicyCache
from esmd.services.policy_resolve import Target
from esmd.timeutil import utcnow
from trapsapi.models import AgentPolicy

_AUTHENTICATE = Statement(
    f"SELECT {', '.join(AUTH_COLUMNS[:-1])},"
    f" (SELECT version FROM policy_state WHERE id = {POLICY_ROW}), os"
    " FROM agents WHERE agent_id = ?"
)
_SERVED = (
    update(AGENTS)
    .where(AGENTS.c.agent_id.in_(bindparam("b_agents", expanding=True)))
    .values(policy_served_version=bindparam("b_version"))
)


@dataclass(frozen=True)
class Caller:
    """The authenticated waiting agent and what its policy is resolved for."""

    identity: AgentIdentity
    target: Target


def authenticate_waiter(db: Database, credential: str) -> Caller:
    """The agent behind the credential (the check-in's rules) and its policy target."""
    agent_id, secret = parse_agent_credential(credential)
    with db.read() as connection:
        driver = Driver(connection)
        values = driver.one(_AUTHENTICATE, (agent_id,))
    row: dict[str, Any] | None = None
    if values is not None:
        row = dict(zip((*AUTH_COLUMNS, "os"), values, strict=True))
        row["labels"] = driver.read_json(row["labels"])
    agent = identity_of(agent_id, secret, row)
    os_name = str(row["os"] or "") if row is not None else ""
    return Caller(agent, Target(agent.hostname, os_name, agent.labels, agent.group))


News = tuple[AgentPolicy | None, list[dict[str, Any]]]


def gather_news(
    db: Database, policies: PolicyCache, agents: list[tuple[str, Target, bool]], version: int
) -> dict[str, News]:
    """For each (agent, target, behind): its policy at ``version`` if it is behind, and its
    pending actions (marked delivered), in one transaction."""
    now = utcnow()
    news: dict[str, News] = {}
    with db.write() as connection:
        driver = Driver(connection)
        if driver.postgres:  # as the check-in: a lost delivery record repeats at the next one
            driver.raw.execute("SET LOCAL synchronous_commit TO OFF")
        actions = deliver_many(connection, [a for a, _, _ in agents], now)
        behind = [(a, t) for a, t, late in agents if late]
        if behind:
            connection.execute(_SERVED, {"b_agents": [a for a, _ in behind], "b_version": version})
        by_agent = {a: policies.get(connection, version, t) for a, t in behind}
        for agent_id, _, _ in agents:
            news[agent_id] = (by_agent.get(agent_id), actions.get(agent_id, []))
    return news


def action_agents(db: Database, action_id: str) -> list[str]:
    """The agents for which ``action_id`` is still pending."""
    with db.read() as connection:
        rows = connection.execute(
            select(ACTION_AGENTS.c.agent_id).where(
                ACTION_AGENTS.c.action_id == action_id, ACTION_AGENTS.c.state == "pending"
            )
        )
        return [r.agent_id for r in rows]

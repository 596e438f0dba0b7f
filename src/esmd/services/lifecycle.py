"""An agent's credential over its life: rotation by the agent, revocation and forgetting by
an admin. Each change is one transaction with its audit record."""

from __future__ import annotations

from sqlalchemy import Connection, delete, select, update

from esmd.db.engine import Database
from esmd.db.tables import AGENTS, EVENTS
from esmd.errors import NotFound
from esmd.security import new_token, token_hash
from esmd.services.agents import REVOKED, authenticate
from esmd.services.audit import audit_row
from esmd.services.wake import credentials_changed
from trapsapi.models_lifecycle import AgentForgotten, RotatedSecret


def rotate(db: Database, credential: str, source_ip: str | None) -> RotatedSecret:
    """A new secret for the calling agent. The current one stays valid until the agent
    first uses the new one, so a lost reply cannot lock it out."""
    secret = new_token()
    with db.write() as connection:
        agent = authenticate(connection, credential)
        connection.execute(
            update(AGENTS)
            .where(AGENTS.c.agent_id == agent.agent_id)
            .values(next_secret_hash=token_hash(secret))
        )
        audit_row(
            connection,
            f"agent:{agent.agent_id}",
            "agent.rotate",
            agent.agent_id,
            {"hostname": agent.hostname},
            source_ip=source_ip,
        )
    return RotatedSecret(agent_id=agent.agent_id, agent_secret=secret)


def _hostname(connection: Connection, agent_id: str) -> str:
    row = connection.execute(select(AGENTS.c.hostname).where(AGENTS.c.agent_id == agent_id)).first()
    if row is None:
        raise NotFound(f"no agent {agent_id!r}")
    return str(row.hostname)


def revoke(db: Database, agent_id: str, actor: str, source_ip: str | None) -> None:
    """Refuse the agent's current (and pending) secret from the next request on."""
    with db.write() as connection:
        hostname = _hostname(connection, agent_id)
        connection.execute(
            update(AGENTS)
            .where(AGENTS.c.agent_id == agent_id)
            .values(secret_hash=REVOKED, next_secret_hash=None)
        )
        credentials_changed(connection, agent_id)
        audit_row(
            connection, actor, "agent.revoke", agent_id, {"hostname": hostname}, source_ip=source_ip
        )


def forget(db: Database, agent_id: str, actor: str, source_ip: str | None) -> AgentForgotten:
    """Delete the agent and its events (its credential dies with it)."""
    with db.write() as connection:
        hostname = _hostname(connection, agent_id)
        events = connection.execute(delete(EVENTS).where(EVENTS.c.agent_id == agent_id))
        connection.execute(delete(AGENTS).where(AGENTS.c.agent_id == agent_id))
        credentials_changed(connection, agent_id)
        result = AgentForgotten(
            agent_id=agent_id, hostname=hostname, events_deleted=events.rowcount or 0
        )
        audit_row(
            connection,
            actor,
            "agent.delete",
            agent_id,
            result.model_dump(exclude={"agent_id"}),
            source_ip=source_ip,
        )
    return result

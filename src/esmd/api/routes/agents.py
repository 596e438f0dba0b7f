"""Agents as admins see them: health (connected/disconnected) and operational status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlmodel import col, select

from esmd.api.deps import AgentWriter, DatabaseDep, Reader, SessionDep, SettingsDep
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.db.tables import Agent
from esmd.errors import NotFound
from esmd.services import lifecycle
from esmd.services.agents import agent_public, connected_since, health_filter
from esmd.timeutil import utcnow
from trapsapi import routes
from trapsapi.enums import Health
from trapsapi.models import AgentPublic, Page
from trapsapi.models_lifecycle import AgentForgotten

router = APIRouter(tags=["agents"], responses=ADMIN_ERRORS)


@router.get(routes.AGENTS)
def list_agents(
    session: SessionDep,
    settings: SettingsDep,
    _admin: Reader,
    health: Health | None = None,
    hostname: Annotated[
        str | None, Query(max_length=255, description="Substring, case-insensitive.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AgentPublic]:
    now = utcnow()
    statement = select(Agent)
    if health is not None:
        statement = statement.where(health_filter(health, connected_since(settings, now)))
    if hostname:
        statement = statement.where(
            func.lower(col(Agent.hostname)).contains(hostname.lower(), autoescape=True)
        )
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(col(Agent.hostname), col(Agent.agent_id)).offset(offset).limit(limit)
    ).all()
    return Page[AgentPublic](data=[agent_public(r, settings, now) for r in rows], count=count)


@router.get(f"{routes.AGENTS}/{{agent_id}}", responses=NOT_FOUND)
def get_agent(
    agent_id: str, session: SessionDep, settings: SettingsDep, _admin: Reader
) -> AgentPublic:
    row = session.get(Agent, agent_id)
    if row is None:
        raise NotFound(f"no agent {agent_id!r}")
    return agent_public(row, settings, utcnow())


@router.post(f"{routes.AGENTS}/{{agent_id}}/revoke", responses=NOT_FOUND, status_code=204)
def revoke_agent(agent_id: str, db: DatabaseDep, admin: AgentWriter) -> None:
    """Refuse the agent's credential from its next request on (it must enroll again)."""
    lifecycle.revoke(db, agent_id, admin.username, admin.source_ip)


@router.delete(f"{routes.AGENTS}/{{agent_id}}", responses=NOT_FOUND)
def delete_agent(agent_id: str, db: DatabaseDep, admin: AgentWriter) -> AgentForgotten:
    """Forget an agent: its row, its credential and its events."""
    return lifecycle.forget(db, agent_id, admin.username, admin.source_ip)

"""Agents as admins see them: health (connected/disconnected) and operational status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import and_, func, not_, or_
from sqlmodel import col, select

from esmd.api.deps import Reader, SessionDep, SettingsDep
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.db.tables import Agent
from esmd.errors import NotFound
from esmd.services.agents import agent_public, connected_since
from esmd.timeutil import utcnow
from trapsapi import routes
from trapsapi.enums import Health
from trapsapi.models import AgentPublic, Page

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
        since = connected_since(settings, now)
        last = col(Agent.last_checkin_at)
        expected = col(Agent.policy_expected_version)
        applied = col(Agent.policy_version)
        drift = and_(expected.is_not(None), or_(applied.is_(None), applied != expected))
        if health is Health.CONNECTED:
            statement = statement.where(last > since, not_(drift))
        elif health is Health.DEGRADED:
            statement = statement.where(last > since, drift)
        else:
            statement = statement.where(or_(last.is_(None), last <= since))
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

"""Agents as admins see them: health (connected/disconnected) and operational status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func, or_
from sqlalchemy import select as sa_select

from esmd.api.deps import DatabaseDep, Reader, SessionDep, SettingsDep
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.db.tables import AGENTS, Agent
from esmd.errors import NotFound
from esmd.services.agent_listing import page_json
from esmd.services.agents import agent_public, connected_since
from esmd.timeutil import utcnow
from trapsapi import routes
from trapsapi.enums import Health
from trapsapi.models import AgentPublic, Page

router = APIRouter(tags=["agents"], responses=ADMIN_ERRORS)
HIDDEN_COLUMNS = {"secret_hash", "enrollment_token_id"}


@router.get(routes.AGENTS, response_model=Page[AgentPublic])
def list_agents(
    db: DatabaseDep,
    settings: SettingsDep,
    _admin: Reader,
    health: Health | None = None,
    hostname: Annotated[
        str | None, Query(max_length=255, description="Substring, case-insensitive.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Response:
    """By hostname. Core rows to JSON directly (see esmd.services.agent_listing)."""
    now = utcnow()
    conditions: list[Any] = []
    if health is not None:
        since = connected_since(settings, now)
        last = AGENTS.c.last_checkin_at
        if health is Health.CONNECTED:
            conditions.append(last > since)
        else:
            conditions.append(or_(last.is_(None), last <= since))
    if hostname:
        conditions.append(func.lower(AGENTS.c.hostname).contains(hostname.lower(), autoescape=True))
    columns = [c for c in AGENTS.c if c.name not in HIDDEN_COLUMNS]
    with db.read() as connection:
        count = connection.execute(
            sa_select(func.count()).select_from(AGENTS).where(*conditions)
        ).scalar_one()
        rows = (
            connection.execute(
                sa_select(*columns)
                .where(*conditions)
                .order_by(AGENTS.c.hostname, AGENTS.c.agent_id)
                .offset(offset)
                .limit(limit)
            )
            .mappings()
            .all()
        )
    body = page_json(rows, count, settings, now)
    return Response(content=body, media_type="application/json")


@router.get(f"{routes.AGENTS}/{{agent_id}}", responses=NOT_FOUND)
def get_agent(
    agent_id: str, session: SessionDep, settings: SettingsDep, _admin: Reader
) -> AgentPublic:
    row = session.get(Agent, agent_id)
    if row is None:
        raise NotFound(f"no agent {agent_id!r}")
    return agent_public(row, settings, utcnow())

"""Agents as admins see them (health, status, policy drift); revoke and forget them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from sqlalchemy import func
from sqlalchemy import select as sa_select

from esmd.api.deps import AgentWriter, DatabaseDep, Reader, SessionDep, SettingsDep
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Cursor, Limit, Offset
from esmd.db.tables import AGENTS, Agent
from esmd.errors import NotFound
from esmd.services import lifecycle, paging
from esmd.services.agent_listing import page_json
from esmd.services.agents import agent_public, connected_since, health_filter
from esmd.services.paging import Keyset, SortKey
from esmd.timeutil import utcnow
from trapsapi import routes
from trapsapi.enums import Health
from trapsapi.models import AgentPublic, Page
from trapsapi.models_lifecycle import AgentForgotten

router = APIRouter(tags=["agents"], responses=ADMIN_ERRORS)
HIDDEN_COLUMNS = {"secret_hash", "enrollment_token_id"}
BY_HOSTNAME = Keyset("agents.hostname", (SortKey(AGENTS.c.hostname), SortKey(AGENTS.c.agent_id)))


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
    cursor: Cursor = None,
) -> Response:
    """By hostname. Core rows to JSON directly (see esmd.services.agent_listing)."""
    paging.start(cursor, offset)
    filters = {"health": health, "hostname": hostname}
    now = utcnow()
    conditions: list[Any] = []
    if health is not None:
        conditions.append(health_filter(health, connected_since(settings, now)))
    if hostname:
        conditions.append(func.lower(AGENTS.c.hostname).contains(hostname.lower(), autoescape=True))
    columns = [c for c in AGENTS.c if c.name not in HIDDEN_COLUMNS]
    counted = paging.capped_count_statement(sa_select(AGENTS.c.agent_id).where(*conditions))
    statement = sa_select(*columns).where(*conditions)
    if cursor:
        statement = statement.where(BY_HOSTNAME.after(BY_HOSTNAME.decode(cursor, filters)))
    statement = statement.order_by(*BY_HOSTNAME.order_by()).offset(offset).limit(limit + 1)
    with db.read() as connection:
        count = paging.capped(connection.execute(counted).scalar_one())
        rows = connection.execute(statement).mappings().all()
    page = paging.window(rows, limit, BY_HOSTNAME, filters)
    body = page_json(page.rows, count, page.next_cursor, settings, now)
    return Response(content=body, media_type="application/json")


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

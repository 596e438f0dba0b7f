"""Security events for triage: filter by agent, minimum severity, module and time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlmodel import col, select

from esmd.api.deps import CurrentAdmin, SessionDep
from esmd.api.params import ADMIN_ERRORS, Limit, Offset
from esmd.db.tables import Event
from esmd.errors import BadRequest
from esmd.timeutil import parse_since
from trapsapi import routes
from trapsapi.enums import SEVERITY_ORDER, Severity
from trapsapi.models import EventPublic, Page

router = APIRouter(tags=["events"], responses=ADMIN_ERRORS)


@router.get(routes.EVENTS)
def list_events(
    session: SessionDep,
    _admin: CurrentAdmin,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[Severity | None, Query(description="Minimum severity.")] = None,
    module: Annotated[str | None, Query(max_length=255)] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="ISO-8601 time, or a duration: 30s, 15m, 1h, 7d."),
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[EventPublic]:
    """Newest first."""
    statement = select(Event)
    if agent_id:
        statement = statement.where(col(Event.agent_id) == agent_id)
    if severity is not None:
        floor = SEVERITY_ORDER[severity]
        wanted = [s.value for s in Severity if SEVERITY_ORDER[s] >= floor]
        statement = statement.where(col(Event.severity).in_(wanted))
    if module:
        statement = statement.where(col(Event.module) == module)
    if since:
        try:
            statement = statement.where(col(Event.time) >= parse_since(since))
        except ValueError as exc:
            raise BadRequest(f"since: {exc}") from None
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(col(Event.time).desc(), col(Event.seq).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[EventPublic](data=[EventPublic.model_validate(r) for r in rows], count=count)

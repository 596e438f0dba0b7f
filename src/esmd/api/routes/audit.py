"""The audit log, read-only: there is no route that edits or deletes a record."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func
from sqlmodel import col, select

from esmd.api.deps import AuditReader, SessionDep
from esmd.api.params import ADMIN_ERRORS, Limit, Offset
from esmd.db.tables import AuditEntry
from esmd.errors import BadRequest
from esmd.timeutil import parse_since
from trapsapi import routes
from trapsapi.models import AuditRecord, Page

router = APIRouter(tags=["audit"], responses=ADMIN_ERRORS)


@router.get(routes.AUDIT)
def list_audit(
    session: SessionDep,
    _admin: AuditReader,
    actor: Annotated[str | None, Query(max_length=128)] = None,
    action: Annotated[
        str | None,
        Query(max_length=64, description="An action (user.create) or a prefix ending in a dot."),
    ] = None,
    since: Annotated[
        str | None,
        Query(max_length=64, description="ISO-8601 time, or a duration: 30s, 15m, 1h, 7d."),
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AuditRecord]:
    """Newest first."""
    statement = select(AuditEntry)
    if actor:
        statement = statement.where(col(AuditEntry.actor) == actor)
    if action:
        if action.endswith("."):
            statement = statement.where(col(AuditEntry.action).startswith(action, autoescape=True))
        else:
            statement = statement.where(col(AuditEntry.action) == action)
    if since:
        try:
            statement = statement.where(col(AuditEntry.at) >= parse_since(since))
        except ValueError as exc:
            raise BadRequest(f"since: {exc}") from None
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(col(AuditEntry.id).desc()).offset(offset).limit(limit)
    ).all()
    return Page[AuditRecord](data=[AuditRecord.model_validate(r) for r in rows], count=count)

"""The audit log, read-only: there is no route that edits or deletes a record."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import col, select

from esmd.api.deps import AuditReader, SessionDep
from esmd.api.params import ADMIN_ERRORS, Cursor, Limit, Offset
from esmd.db.tables import AuditEntry
from esmd.errors import BadRequest
from esmd.services import paging
from esmd.services.paging import Keyset, SortKey
from esmd.timeutil import parse_since
from trapsapi import routes
from trapsapi.models import AuditRecord, Page

router = APIRouter(tags=["audit"], responses=ADMIN_ERRORS)
NEWEST = Keyset("audit.id", (SortKey(col(AuditEntry.id), True, int),))


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
    cursor: Cursor = None,
) -> Page[AuditRecord]:
    """Newest first; page with ``cursor`` (fast at any depth) or ``offset``."""
    paging.start(cursor, offset)
    filters = {"actor": actor, "action": action, "since": since}
    conditions: list[Any] = []
    if actor:
        conditions.append(col(AuditEntry.actor) == actor)
    if action:
        if action.endswith("."):
            conditions.append(col(AuditEntry.action).startswith(action, autoescape=True))
        else:
            conditions.append(col(AuditEntry.action) == action)
    if since:
        try:
            conditions.append(col(AuditEntry.at) >= parse_since(since))
        except ValueError as exc:
            raise BadRequest(f"since: {exc}") from None
    counted = paging.capped_count_statement(select(col(AuditEntry.id)).where(*conditions))
    count, count_capped = paging.capped(session.connection().execute(counted).scalar_one())
    statement = select(AuditEntry).where(*conditions)
    if cursor:
        statement = statement.where(NEWEST.after(NEWEST.decode(cursor, filters)))
    rows = session.exec(statement.order_by(*NEWEST.order_by()).offset(offset).limit(limit + 1))
    page = paging.window(rows.all(), limit, NEWEST, filters)
    return Page[AuditRecord](
        data=[AuditRecord.model_validate(r) for r in page.rows],
        count=count,
        count_capped=count_capped,
        next_cursor=page.next_cursor,
    )

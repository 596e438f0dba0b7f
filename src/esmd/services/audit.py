"""The audit log: one row per admin change, written in the transaction of the change.

Rows are only ever inserted: no route updates or deletes them (``GET /api/v1/audit`` reads).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, insert
from sqlmodel import Session

from esmd.db.engine import Database
from esmd.db.tables import AUDIT_LOG, AuditEntry
from esmd.errors import NotFound
from esmd.timeutil import utcnow


def _record(
    actor: str, action: str, target: str, detail: dict[str, Any] | None, source_ip: str | None
) -> dict[str, Any]:
    return {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "target": target[:255],
        "detail": detail or {},
        "source_ip": source_ip,
    }


def audit(
    session: Session,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    *,
    source_ip: str | None = None,
) -> None:
    session.add(AuditEntry(**_record(actor, action, target, detail, source_ip)))


def audit_row(
    connection: Connection,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    *,
    source_ip: str | None = None,
) -> None:
    """:func:`audit` for changes made with Core statements on a connection."""
    connection.execute(insert(AUDIT_LOG).values(_record(actor, action, target, detail, source_ip)))


def revoke_audited(
    db: Database,
    model: type[Any],
    row_id: str,
    what: str,
    action: str,
    actor: str,
    source_ip: str | None,
    detail: Callable[[Any], dict[str, Any]],
) -> None:
    """Set ``revoked`` on one credential row and audit it; 404 if missing, no-op if revoked."""
    with db.write_session() as session:
        row = session.get(model, row_id)
        if row is None:
            raise NotFound(f"no {what} {row_id!r}")
        if not row.revoked:
            row.revoked = True
            session.add(row)
            audit(session, actor, action, row_id, detail(row), source_ip=source_ip)

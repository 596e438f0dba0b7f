"""The audit log: one row per admin change, written in the transaction of the change.

Rows are only ever inserted: no route updates or deletes them (``GET /api/v1/audit`` reads).
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from esmd.db.tables import AuditEntry
from esmd.timeutil import utcnow


def audit(
    session: Session,
    actor: str,
    action: str,
    target: str,
    detail: dict[str, Any] | None = None,
    *,
    source_ip: str | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor,
            action=action,
            target=target[:255],
            detail=detail or {},
            source_ip=source_ip,
        )
    )

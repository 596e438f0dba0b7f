"""Liveness and readiness: answers ok only when the database answers."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from esmd.api.deps import DatabaseDep
from trapsapi import routes

router = APIRouter(tags=["health"])


@router.get(routes.HEALTHZ)
def healthz(db: DatabaseDep) -> dict[str, str]:
    with db.read() as connection:
        connection.execute(text("SELECT 1"))
    return {"status": "ok"}

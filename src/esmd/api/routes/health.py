"""Operations: liveness, readiness (database and schema) and Prometheus metrics.

All three are public, as probes and scrapers send no credential; metrics carry counts only.
"""

from __future__ import annotations

import functools

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import case, func, select, text

from esmd import __version__
from esmd.api.deps import PUBLIC, DatabaseDep, MetricsDep, SettingsDep
from esmd.api.params import ERRORS
from esmd.db.tables import AGENTS
from esmd.errors import one_line
from esmd.metrics import CONTENT_TYPE
from esmd.services.agents import connected_since
from esmd.setup import head_revision
from esmd.timeutil import utcnow
from trapsapi import routes

router = APIRouter(tags=["health"], dependencies=[PUBLIC])


@functools.cache
def _head() -> str:
    return head_revision()


@router.get(routes.HEALTHZ)
def healthz(db: DatabaseDep) -> dict[str, str]:
    with db.read() as connection:
        connection.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get(
    routes.READYZ,
    responses={503: {"description": "Database unreachable or schema not at this esmd's head"}},
)
def readyz(db: DatabaseDep) -> JSONResponse:
    """Ready when the database answers and its schema is the revision this esmd needs."""
    head = _head()
    try:
        with db.read() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    except Exception as exc:  # any failure to reach the database means "not ready"
        return JSONResponse(
            {"status": "unavailable", "detail": one_line(f"database unreachable: {exc}")},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    if revision != head:
        return JSONResponse(
            {
                "status": "unavailable",
                "detail": f"schema revision {revision}, this esmd needs {head}: run esmd init",
            },
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready", "revision": revision})


@router.get(
    routes.METRICS,
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}, **ERRORS},
)
def metrics(db: DatabaseDep, settings: SettingsDep, counters: MetricsDep) -> Response:
    """Prometheus text format: requests, check-ins, events, agents by health, queue depths."""
    since = connected_since(settings, utcnow())
    connected = case((AGENTS.c.last_checkin_at > since, 1), else_=0)
    with db.read() as connection:
        total, up, outbox = connection.execute(
            select(
                func.count(),
                func.coalesce(func.sum(connected), 0),
                func.coalesce(func.sum(AGENTS.c.outbox_depth), 0),
            ).select_from(AGENTS)
        ).one()
    agents = {"connected": int(up), "disconnected": int(total) - int(up)}
    text_format = counters.render(agents, __version__, agent_outbox_events=int(outbox))
    return Response(text_format, media_type=CONTENT_TYPE)

"""The communication-server registry: every esmd process, alive or gone."""

from __future__ import annotations

from fastapi import APIRouter

from esmd.api.deps import DatabaseDep, Reader
from esmd.api.params import ADMIN_ERRORS
from esmd.services.registry import list_servers
from trapsapi import routes
from trapsapi.models import Page
from trapsapi.models_servers import ServerPublic

router = APIRouter(tags=["servers"], responses=ADMIN_ERRORS)


@router.get(routes.SERVERS)
def servers(db: DatabaseDep, _admin: Reader) -> Page[ServerPublic]:
    """The esmd processes sharing this database; ``alive`` when their heartbeat is recent."""
    rows = list_servers(db)
    return Page[ServerPublic](data=rows, count=len(rows))

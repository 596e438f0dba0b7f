"""The ESM's version, for ``trapsctl version`` (signed-in readers only: probes get no version)."""

from __future__ import annotations

from fastapi import APIRouter

from esmd import __version__
from esmd.api.deps import Reader
from esmd.api.params import ADMIN_ERRORS
from trapsapi import API_VERSION, routes

router = APIRouter(tags=["health"], responses=ADMIN_ERRORS)


@router.get(routes.SERVER_VERSION)
def server_version(_admin: Reader) -> dict[str, str]:
    """The esmd release and the API version it serves."""
    return {"esmd": __version__, "api": API_VERSION}

"""Forensic bundles: analysts list, show and download them; security admins delete them.

Agents upload bundles for a ``retrieve_forensics`` action through the action centre's agent
routes (``POST /agent/actions/{id}/forensics``, in :mod:`esmd.api.routes.actions`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from esmd.api.deps import DatabaseDep, ForensicsDeleter, ForensicsReader
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.errors import BadRequest
from esmd.services import forensics
from esmd.timeutil import parse_since
from trapsapi import routes
from trapsapi.models import Page
from trapsapi.models_forensics import ForensicBundle

router = APIRouter(tags=["forensics"], responses=ADMIN_ERRORS)
BundleId = Annotated[str, Path(max_length=32, description="The bundle's ID on the server.")]


@router.get(routes.FORENSICS)
def list_forensics(
    db: DatabaseDep,
    _admin: ForensicsReader,
    agent_id: Annotated[str | None, Query(max_length=36)] = None,
    event_id: Annotated[str | None, Query(max_length=36)] = None,
    since: Annotated[
        str | None, Query(max_length=64, description="Received since: 1h, 7d or ISO-8601.")
    ] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[ForensicBundle]:
    """Stored bundles, newest received first (metadata only)."""
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise BadRequest(f"since: {exc}") from None
    return forensics.list_bundles(
        db, agent_id=agent_id, event_id=event_id, since=start, limit=limit, offset=offset
    )


@router.get(f"{routes.FORENSICS}/{{bundle_id}}", responses=NOT_FOUND)
def get_forensics(bundle_id: BundleId, db: DatabaseDep, _admin: ForensicsReader) -> ForensicBundle:
    """One bundle's metadata."""
    return forensics.show(db, bundle_id)


@router.get(
    f"{routes.FORENSICS}/{{bundle_id}}/content",
    responses={
        **NOT_FOUND,
        200: {"content": {"application/gzip": {}}, "description": "The gzip JSON bundle."},
    },
    response_class=StreamingResponse,
)
def download_forensics(
    bundle_id: BundleId, db: DatabaseDep, _admin: ForensicsReader
) -> StreamingResponse:
    """The bundle (gzip of JSON), streamed; ``X-Content-SHA256`` is its SHA-256."""
    bundle = forensics.show(db, bundle_id)
    headers = {
        "Content-Length": str(bundle.size),
        "Content-Disposition": f'attachment; filename="{bundle.bundle_id}.json.gz"',
        "X-Content-SHA256": bundle.sha256,
    }
    return StreamingResponse(
        forensics.content_chunks(db, bundle_id, bundle.size),
        media_type="application/gzip",
        headers=headers,
    )


@router.delete(f"{routes.FORENSICS}/{{bundle_id}}", responses=NOT_FOUND)
def delete_forensics(
    bundle_id: BundleId, db: DatabaseDep, admin: ForensicsDeleter
) -> ForensicBundle:
    """Delete a bundle (the agent may still hold its own copy); returns what was deleted."""
    return forensics.delete_bundle(db, bundle_id, admin)

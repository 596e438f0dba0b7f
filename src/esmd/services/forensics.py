"""Forensic bundles: stored from an agent's retrieve_forensics uploads, listed, downloaded in
chunks, deleted; the references an event's detail shows.

Uploads go through the action centre's checks (:func:`action_delivery.decode_upload`,
:func:`action_delivery.upload_target`), like a log bundle. The content is read back in
``CHUNK_BYTES`` slices (``substr`` on SQLite and PostgreSQL alike), so a download never holds
a whole bundle in memory nor a database connection for the length of the transfer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, LargeBinary, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.db.tables_forensics import FORENSIC_BUNDLES as FB
from esmd.errors import NotFound
from esmd.services import action_delivery
from esmd.services.accounts import AdminIdentity
from esmd.services.agents import AgentIdentity
from esmd.services.audit import audit_row
from esmd.timeutil import as_utc, utcnow
from trapsapi.enums_actions import ActionType
from trapsapi.models import Page
from trapsapi.models_forensics import (
    MAX_FORENSIC_BYTES,
    ForensicBundle,
    ForensicRef,
    ForensicUpload,
    ForensicUploadAck,
)

CHUNK_BYTES = 256 * 1024
_METADATA = (
    FB.c.id,
    FB.c.agent_id,
    AGENTS.c.hostname,
    FB.c.bundle_id,
    FB.c.event_id,
    FB.c.action_id,
    FB.c.size,
    FB.c.sha256,
    FB.c.created_at,
    FB.c.received_at,
)


def _public(row: Any) -> ForensicBundle:
    return ForensicBundle(
        id=row.id,
        agent_id=row.agent_id,
        hostname=row.hostname,
        bundle_id=row.bundle_id,
        event_id=row.event_id,
        action_id=row.action_id,
        size=row.size,
        sha256=row.sha256,
        created_at=as_utc(row.created_at),
        received_at=as_utc(row.received_at),
    )


def _stored(connection: Connection, agent_id: str, bundle_id: str) -> Any:
    return connection.execute(
        select(FB.c.id, FB.c.size).where(FB.c.agent_id == agent_id, FB.c.bundle_id == bundle_id)
    ).first()


def upload(
    db: Database, agent: AgentIdentity, action_id: str, body: ForensicUpload, source_ip: str | None
) -> ForensicUploadAck:
    """Store one bundle of a retrieve_forensics action; a bundle stored before (by this or an
    earlier action, or a retried request) is acknowledged and left unchanged."""
    content = action_delivery.decode_upload(body.content_b64, body.sha256, MAX_FORENSIC_BYTES)
    bundle_id = str(body.bundle_id)
    try:
        with db.write() as connection:
            action_delivery.upload_target(
                connection, agent.agent_id, action_id, ActionType.RETRIEVE_FORENSICS
            )
            stored = _stored(connection, agent.agent_id, bundle_id)
            if stored is not None:
                return ForensicUploadAck(id=stored.id, size=stored.size, duplicate=True)
            new_id = uuid.uuid4().hex
            connection.execute(
                insert(FB).values(
                    id=new_id,
                    agent_id=agent.agent_id,
                    bundle_id=bundle_id,
                    event_id=str(body.event_id) if body.event_id else None,
                    action_id=action_id,
                    size=len(content),
                    sha256=body.sha256,
                    created_at=body.created_at,
                    received_at=utcnow(),
                    content=content,
                )
            )
            audit_row(
                connection,
                f"agent:{agent.agent_id}",
                "forensics.upload",
                new_id,
                {"action_id": action_id, "bundle_id": bundle_id, "size": len(content)},
                source_ip=source_ip,
            )
    except IntegrityError:  # the same bundle committed by a concurrent retry
        with db.read() as connection:
            stored = _stored(connection, agent.agent_id, bundle_id)
        if stored is None:
            raise
        return ForensicUploadAck(id=stored.id, size=stored.size, duplicate=True)
    return ForensicUploadAck(id=new_id, size=len(content), duplicate=False)


def list_bundles(
    db: Database,
    *,
    agent_id: str | None = None,
    event_id: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Page[ForensicBundle]:
    """Newest received first."""
    conditions = []
    if agent_id is not None:
        conditions.append(FB.c.agent_id == agent_id)
    if event_id is not None:
        conditions.append(FB.c.event_id == event_id)
    if since is not None:
        conditions.append(FB.c.received_at >= since)
    query = (
        select(*_METADATA)
        .select_from(FB.join(AGENTS, AGENTS.c.agent_id == FB.c.agent_id))
        .where(*conditions)
        .order_by(FB.c.received_at.desc(), FB.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with db.read() as connection:
        rows = connection.execute(query).all()
        count = connection.execute(select(func.count()).select_from(FB).where(*conditions))
        total = int(count.scalar_one())
    return Page[ForensicBundle](data=[_public(r) for r in rows], count=total)


def show(db: Database, bundle_id: str) -> ForensicBundle:
    with db.read() as connection:
        row = connection.execute(
            select(*_METADATA)
            .select_from(FB.join(AGENTS, AGENTS.c.agent_id == FB.c.agent_id))
            .where(FB.c.id == bundle_id)
        ).first()
    if row is None:
        raise NotFound(f"no forensic bundle {bundle_id!r}")
    return _public(row)


def content_chunks(db: Database, bundle_id: str, size: int) -> Iterator[bytes]:
    """The bundle's bytes, ``CHUNK_BYTES`` at a time (one short read each); stops early if
    the bundle is deleted meanwhile (the client's SHA-256 check then fails)."""
    for start in range(0, size, CHUNK_BYTES):
        piece = func.substr(FB.c.content, start + 1, CHUNK_BYTES, type_=LargeBinary)
        with db.read() as connection:
            chunk = connection.execute(select(piece).where(FB.c.id == bundle_id)).scalar()
        if not chunk:
            return
        yield bytes(chunk)


def delete_bundle(db: Database, bundle_id: str, admin: AdminIdentity) -> ForensicBundle:
    bundle = show(db, bundle_id)
    with db.write() as connection:
        deleted = connection.execute(delete(FB).where(FB.c.id == bundle_id)).rowcount
        if not deleted:
            raise NotFound(f"no forensic bundle {bundle_id!r}")
        audit_row(
            connection,
            admin.username,
            "forensics.delete",
            bundle_id,
            {"agent_id": bundle.agent_id, "event_id": bundle.event_id, "size": bundle.size},
            source_ip=admin.source_ip,
        )
    return bundle


def refs_for_event(connection: Connection, event_id: str, agent_id: str) -> list[ForensicRef]:
    """The bundles of the event that its own agent uploaded (another agent's claim is not
    shown), oldest first."""
    rows = connection.execute(
        select(FB.c.id, FB.c.size, FB.c.received_at)
        .where(FB.c.event_id == event_id, FB.c.agent_id == agent_id)
        .order_by(FB.c.received_at, FB.c.id)
    ).all()
    return [ForensicRef(id=r.id, size=r.size, received_at=as_utc(r.received_at)) for r in rows]

"""Forensic bundles on the server, on both databases: upload for a retrieve_forensics action
(the log upload's checks, idempotent per bundle), list/show/streamed download/delete with
their roles, the event detail's references, and retention by age, count and bytes."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body, new_event
from sqlalchemy import select, update

from esmd.db.engine import Database
from esmd.db.tables import AUDIT_LOG, FORENSIC_BUNDLES
from esmd.ops import retention
from esmd.services.forensics import CHUNK_BYTES
from esmd.timeutil import utcnow
from trapsapi import routes
from trapsapi.errors import AuthError, NotFound


def upload_body(bundle_id: str, content: bytes, event_id: str | None = None) -> dict[str, Any]:
    return {
        "bundle_id": bundle_id,
        "event_id": event_id,
        "created_at": datetime.now(UTC).isoformat(),
        "content_b64": base64.b64encode(content).decode(),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def delivered(esm: Esm, agent: Any, kind: str = "retrieve_forensics") -> str:
    action_id = str(esm.admin.create_action(kind, {"agent_id": agent.agent_id})["id"])
    agent.checkin(checkin_body(hostname="forensic-host"))
    return action_id


def test_upload_list_download_and_delete_with_roles(esm: Esm) -> None:
    agent = esm.enroll("forensic-host")
    event = new_event()
    agent.upload_events([event])
    action_id = delivered(esm, agent)
    content = os.urandom(2 * CHUNK_BYTES + 1000)  # three chunks when streamed
    body = upload_body(event["id"], content, event["id"])

    first = agent.upload_forensics(action_id, body)
    again = agent.upload_forensics(action_id, body)  # a retried request: no new row
    assert (first["size"], first["duplicate"]) == (len(content), False)
    assert (again["id"], again["duplicate"]) == (first["id"], True)
    bundle_id = first["id"]

    # Bad uploads change nothing and say why in one line.
    header = esm.agent_header(agent)
    path = f"{routes.AGENT_ACTIONS}/{action_id}/forensics"
    logs_action = delivered(esm, agent, "retrieve_logs")
    other = esm.enroll("other-host")
    before = esm.snapshot()
    for bad_path, bad_body, headers, status, words in [
        (path, {**body, "bundle_id": "b" * 40, "sha256": "0" * 64}, header, 422, "sha256"),
        (path, {**body, "bundle_id": "c" * 40, "content_b64": "!!"}, header, 422, "base64"),
        (path, {**body, "bundle_id": "../etc/passwd"}, header, 422, "bundle_id"),
        (f"{routes.AGENT_ACTIONS}/{logs_action}/forensics", body, header, 409, "retrieve_logs"),
        (path, body, esm.agent_header(other), 404, "no action"),
    ]:
        reply = esm.raw("POST", bad_path, bad_body, headers)
        assert reply.status == status, (bad_body, reply.raw)
        assert words in reply.detail and "\n" not in reply.detail
    assert esm.snapshot() == before

    # Analysts read and download; viewers do not; only security admins delete.
    analyst = esm.user("analyst")
    viewer = esm.user("viewer")
    page = analyst.list_forensics(agent_id=agent.agent_id)
    assert page["count"] == 1
    (listed,) = page["data"]
    assert listed == analyst.get_forensics(bundle_id)
    assert (listed["hostname"], listed["event_id"], listed["action_id"]) == (
        "forensic-host",
        event["id"],
        action_id,
    )
    assert (listed["bundle_id"], listed["sha256"]) == (event["id"], body["sha256"])
    assert analyst.list_forensics(event_id=event["id"])["count"] == 1
    assert analyst.list_forensics(event_id=str(uuid.uuid4()))["count"] == 0
    assert analyst.list_forensics(since="1h")["count"] == 1
    assert analyst.list_forensics(agent_id=other.agent_id)["data"] == []
    chunks: list[bytes] = []
    assert analyst.download_forensics(bundle_id, chunks.append) == {
        "size": len(content),
        "sha256": body["sha256"],
    }
    assert b"".join(chunks) == content and len(chunks) > 1
    raw = esm.raw("GET", f"{routes.FORENSICS}/{bundle_id}/content", None, esm.admin_header())
    assert raw.headers["content-type"] == "application/gzip" and raw.raw == content
    assert f'filename="{event["id"]}.json.gz"' in raw.headers["content-disposition"]
    with pytest.raises(AuthError):
        viewer.list_forensics()
    with pytest.raises(AuthError):
        viewer.download_forensics(bundle_id, chunks.append)
    with pytest.raises(AuthError):
        analyst.delete_forensics(bundle_id)
    for query in ("since=yesterday", "limit=0", "offset=-1"):
        reply = esm.raw("GET", f"{routes.FORENSICS}?{query}", None, esm.admin_header())
        assert reply.status == 422 and "\n" not in reply.detail, query

    # The event lists the bundles its own agent sent (another agent's claim is not shown).
    foreign = delivered(esm, other)
    other.upload_forensics(foreign, upload_body("f" * 36, b"claim", event["id"]))
    detail = esm.admin.get_event(event["id"])
    assert [(ref["id"], ref["size"]) for ref in detail["forensics"]] == [(bundle_id, len(content))]

    security_admin = esm.user("security_admin")
    deleted = security_admin.delete_forensics(bundle_id)
    assert deleted["id"] == bundle_id
    with pytest.raises(NotFound):
        security_admin.get_forensics(bundle_id)
    with pytest.raises(NotFound):
        security_admin.delete_forensics(bundle_id)
    assert esm.admin.get_event(event["id"])["forensics"] == []
    with esm.engine.connect() as connection:
        actions = connection.execute(
            select(AUDIT_LOG.c.action, AUDIT_LOG.c.target).where(
                AUDIT_LOG.c.action.like("forensics.%")
            )
        ).all()
    assert sorted(a.action for a in actions) == [
        "forensics.delete",
        "forensics.upload",
        "forensics.upload",
    ]


def test_retention_by_age_count_and_bytes(esm: Esm) -> None:
    agent = esm.enroll("forensic-host")
    action_id = delivered(esm, agent)
    sizes = [1000, 2000, 3000, 4000, 5000, 6000, 7000]
    ids = [
        agent.upload_forensics(action_id, upload_body(uuid.uuid4().hex, os.urandom(size)))["id"]
        for size in sizes
    ]
    with esm.engine.begin() as connection:  # the first two 40 days old, the rest staggered
        for index, bundle_id in enumerate(ids):
            age = timedelta(days=40 if index < 2 else 1, seconds=len(ids) - index)
            connection.execute(
                update(FORENSIC_BUNDLES)
                .where(FORENSIC_BUNDLES.c.id == bundle_id)
                .values(received_at=utcnow() - age)
            )
    settings = esm.settings.model_copy(
        update={
            "retention_events_days": 0,
            "retention_forensics_days": 30,
            "retention_forensics_max_bundles": 4,
            "retention_forensics_max_bytes": 13_000,
            "retention_batch_size": 2,
        }
    )
    db = Database.from_url(settings.url, pool_size=2)
    try:
        summary = retention.run(db, settings)
        again = retention.run(db, settings)
    finally:
        db.dispose()
    forensics = next(t for t in summary.targets if t.name == "forensics")
    # Age: bundles 0-1; count: 5 left -> 4 (bundle 2); bytes: 4000+5000+6000+7000 > 13000,
    # so the oldest go until it fits: bundle 3 (4000) and 4 (5000) -> 13000.
    assert (forensics.by_age, forensics.by_quota, forensics.by_size) == (2, 1, 2)
    assert summary.lines() == [
        "forensics: 5 deleted (2 by age, 1 by quota, 2 by size) in 3 batches"
    ]
    assert again.deleted == 0
    with esm.engine.connect() as connection:
        left = connection.execute(select(FORENSIC_BUNDLES.c.id)).scalars().all()
        audit = connection.execute(
            select(AUDIT_LOG.c.detail).where(AUDIT_LOG.c.action == "retention.delete")
        ).scalar_one()
    assert sorted(left) == sorted(ids[5:])
    assert audit == {"forensics": {"by_age": 2, "by_quota": 1, "by_size": 2, "files": 0}}

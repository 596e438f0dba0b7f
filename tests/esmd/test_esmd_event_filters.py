"""The console's additions to the admin API: one event by ID, the hostname / SHA-256 /
received-time filters, ``sort=received`` for followers, and the ESM version (both databases)."""

from __future__ import annotations

import uuid

import pytest
from esmd_harness import Esm, checkin_body, new_event

from esmd import __version__
from trapsapi import API_VERSION
from trapsapi.errors import AuthError, Conflict, NotFound


def test_one_event_by_id_and_its_errors(esm: Esm) -> None:
    web = esm.enroll("web-01")
    web.checkin(checkin_body(hostname="web-01"))
    event = new_event(details={"ancestors": [{"pid": 1, "path": "/sbin/init"}]})
    web.upload_events([event])
    shown = esm.admin.get_event(event["id"])
    assert shown["id"] == event["id"] and shown["details"]["ancestors"][0]["path"] == "/sbin/init"
    with pytest.raises(NotFound):
        esm.admin.get_event(str(uuid.uuid4()))
    db = esm.enroll("db-01")
    db.checkin(checkin_body(hostname="db-01"))
    db.upload_events([{**event, "cmdline": "other"}])  # the same ID from another agent
    with pytest.raises(Conflict):
        esm.admin.get_event(event["id"])
    assert esm.admin.get_event(event["id"], agent_id=db.agent_id)["cmdline"] == "other"
    assert esm.raw("GET", f"/api/v1/events/{event['id']}").status == 401
    assert esm.raw("GET", "/api/v1/events/not-a-uuid", headers=esm.admin_header()).status == 422


def test_hostname_sha256_and_received_filters(esm: Esm) -> None:
    web, db = esm.enroll("Web-01"), esm.enroll("db-01")
    web.upload_events([new_event(sha256="cd" * 32), new_event()])
    db.upload_events([new_event()])
    assert esm.admin.list_events(hostname="WEB")["count"] == 2
    assert esm.admin.list_events(hostname="%")["count"] == 0  # LIKE wildcards are literal
    assert esm.admin.list_events(sha256=("CD" * 32))["count"] == 1
    everything = esm.admin.list_events(sort="received", limit=10)["data"]
    assert len(everything) == 3
    assert [e["received_at"] for e in everything] == sorted(e["received_at"] for e in everything)
    last = everything[-1]["received_at"]
    assert esm.admin.list_events(received_since=last)["count"] >= 1
    bad = esm.raw("GET", "/api/v1/events?received_since=tomorrow", headers=esm.admin_header())
    assert bad.status == 422 and "since" in bad.detail
    assert esm.raw("GET", "/api/v1/events?sort=size", headers=esm.admin_header()).status == 422


def test_server_version_needs_a_signed_in_reader(esm: Esm) -> None:
    assert esm.user("viewer").server_version() == {"esmd": __version__, "api": API_VERSION}
    with pytest.raises(AuthError):
        esm.anonymous().server_version()

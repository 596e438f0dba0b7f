"""The admin API: agents (health and status), events (filters), hash verdicts, health, OpenAPI."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body, new_event

from trapsapi import routes
from trapsapi.errors import NotFound


def _module(name: str, enabled: bool = True, healthy: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": enabled,
        "mode": "prevention",
        "mechanism": "psutil-poll",
        "healthy": healthy,
        "detail": "",
    }


def test_agents_list_health_status_and_filters(esm: Esm) -> None:
    full = esm.enroll("web-01")
    full.checkin(checkin_body(hostname="web-01", modules=[_module("malware"), _module("x")]))
    partial = esm.enroll("web-02")
    partial.checkin(
        checkin_body(hostname="web-02", modules=[_module("malware"), _module("x", healthy=False)])
    )
    none = esm.enroll("db-01")
    none.checkin(checkin_body(hostname="DB-01", modules=[_module("malware", healthy=False)]))
    empty = esm.enroll("db-02")
    empty.checkin(checkin_body(hostname="db-02", modules=[_module("m", enabled=False)]))
    silent = esm.enroll("old-01")  # enrolled, never checked in
    listed = esm.admin.list_agents()
    assert listed["count"] == 5
    status = {a["hostname"]: (a["health"], a["status"]) for a in listed["data"]}
    assert status == {
        "web-01": ("connected", "protected"),
        "web-02": ("degraded", "partially_protected"),
        "DB-01": ("degraded", "unprotected"),
        "db-02": ("connected", "unprotected"),
        "old-01": ("disconnected", "unprotected"),
    }
    # A check-in older than heartbeat interval + grace is a disconnected agent.
    stale = datetime.now(UTC) - timedelta(seconds=3600 + 600 + 5)
    esm.sql(
        "UPDATE agents SET last_checkin_at = :t WHERE agent_id = :a",
        t=stale.replace(tzinfo=None) if "sqlite" in esm.settings.url else stale,
        a=partial.agent_id,
    )
    connected = esm.admin.list_agents(health="connected")
    assert sorted(a["hostname"] for a in connected["data"]) == ["db-02", "web-01"]
    degraded = esm.admin.list_agents(health="degraded")["data"]
    assert [(a["hostname"], a["issues"]) for a in degraded] == [
        ("DB-01", ["module malware unhealthy"])
    ]
    gone = esm.admin.list_agents(health="disconnected")
    assert sorted(a["agent_id"] for a in gone["data"]) == sorted(
        [partial.agent_id, silent.agent_id]
    )
    db_hosts = esm.admin.list_agents(hostname="db-")
    assert (db_hosts["count"], sorted(a["hostname"] for a in db_hosts["data"])) == (
        2,
        ["DB-01", "db-02"],
    )
    assert esm.admin.list_agents(hostname="%")["count"] == 0  # LIKE wildcards are literal
    page = esm.admin.list_agents(limit=2, offset=1)
    assert page["count"] == 5 and len(page["data"]) == 2
    shown = esm.admin.get_agent(none.agent_id)
    assert shown["modules"][0]["healthy"] is False
    with pytest.raises(NotFound):
        esm.admin.get_agent("0" * 36)


def test_events_filters_and_order(esm: Esm) -> None:
    a, b = esm.enroll("a"), esm.enroll("b")
    now = datetime.now(UTC)

    def at(minutes: int) -> str:
        return (now - timedelta(minutes=minutes)).isoformat()

    a.upload_events(
        [
            new_event(severity="informational", time=at(120), module="malware"),
            new_event(severity="medium", time=at(50), module="restrictions"),
            new_event(severity="critical", time=at(5), module="malware"),
        ]
    )
    b.upload_events([new_event(severity="high", time=at(1), module="malware")])
    everything = esm.admin.list_events()
    assert everything["count"] == 4
    times = [e["time"] for e in everything["data"]]
    assert times == sorted(times, reverse=True)  # newest first
    assert esm.admin.list_events(agent_id=a.agent_id)["count"] == 3
    high = esm.admin.list_events(severity="high")["data"]
    assert sorted(e["severity"] for e in high) == ["critical", "high"]
    assert esm.admin.list_events(severity="medium")["count"] == 3
    assert esm.admin.list_events(module="restrictions")["count"] == 1
    assert esm.admin.list_events(since="1h")["count"] == 3
    assert esm.admin.list_events(since="10m")["count"] == 2
    assert esm.admin.list_events(since="30s")["count"] == 0
    assert esm.admin.list_events(since="7d")["count"] == 4
    assert esm.admin.list_events(since=at(60))["count"] == 3  # ISO-8601 with offset
    naive = (now - timedelta(minutes=3)).replace(tzinfo=None).isoformat()
    assert esm.admin.list_events(since=naive)["count"] == 1  # naive means UTC
    combined = esm.admin.list_events(agent_id=a.agent_id, severity="high", since="1h")
    assert [e["severity"] for e in combined["data"]] == ["critical"]
    page = esm.admin.list_events(limit=2, offset=2)
    assert page["count"] == 4 and [e["id"] for e in page["data"]] == [
        e["id"] for e in everything["data"][2:]
    ]


def test_hash_verdicts(esm: Esm) -> None:
    sha = "AB" * 32
    created = esm.admin.set_verdict(sha, "malware", "dropper from ticket 42")
    assert created["sha256"] == sha.lower()
    assert (created["verdict"], created["source"], created["updated_by"]) == (
        "malware",
        "admin",
        "admin",
    )
    assert created["comment"] == "dropper from ticket 42"
    assert esm.admin.get_hash(sha.lower()) == created
    esm.admin.set_verdict("cd" * 32, "grayware")
    esm.admin.set_verdict("ef" * 32, "benign")
    assert esm.admin.list_hashes()["count"] == 3
    assert [h["sha256"] for h in esm.admin.list_hashes(verdict="benign")["data"]] == ["ef" * 32]
    esm.admin.unset_verdict(sha)
    with pytest.raises(NotFound):
        esm.admin.get_hash(sha)
    assert esm.admin.list_hashes()["count"] == 2
    actions = (
        esm.sql("SELECT action FROM audit_log WHERE action LIKE 'hash.%' ORDER BY id")
        .scalars()
        .all()
    )
    assert actions == ["hash.set", "hash.set", "hash.set", "hash.unset"]


def test_healthz_and_openapi(esm: Esm) -> None:
    assert esm.raw("GET", routes.HEALTHZ).json == {"status": "ok"}
    spec = esm.raw("GET", "/openapi.json").json
    operations = {
        op["operationId"]: (method, path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    assert operations["agent-checkin"] == ("post", routes.AGENT_CHECKIN)
    assert operations["agent-upload_events"] == ("post", routes.AGENT_EVENTS)
    assert operations["hashes-set_verdict"] == ("put", f"{routes.HASHES}/{{sha256}}")
    expected = {
        routes.AGENT_ENROLL, routes.AGENT_CHECKIN, routes.AGENT_EVENTS, routes.LOGIN,
        routes.LOGOUT, routes.WHOAMI, routes.AGENTS, routes.EVENTS, routes.HASHES,
        routes.ENROLLMENT_TOKENS, routes.HEALTHZ,
    }  # fmt: skip
    assert expected <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ErrorBody" in schemas
    bad = spec["paths"][routes.AGENT_EVENTS]["post"]["responses"]["422"]
    assert bad["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    assert set(schemas["SecurityEvent"]["properties"]) >= {"id", "sha256", "severity"}
    checkin = spec["paths"][routes.AGENT_CHECKIN]["post"]
    assert checkin["security"] == [{"AgentCredential": []}]
    assert checkin["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CheckinRequest"
    )
    schemes = spec["components"]["securitySchemes"]
    assert schemes["AgentCredential"]["scheme"] == schemes["AdminToken"]["scheme"] == "bearer"
    agents = spec["paths"][routes.AGENTS]["get"]
    assert agents["security"] == [{"AdminToken": []}]

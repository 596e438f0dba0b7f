"""The fast agents listing writes exactly the JSON of the pydantic path (GET /agents/{id})."""

from __future__ import annotations

from esmd_harness import Esm, checkin_body


def test_listing_equals_the_model_path_for_every_kind_of_row(esm: Esm) -> None:
    full = esm.enroll("web-01")
    full.checkin(checkin_body(hostname="web-01"))
    bare = esm.enroll("db-01")
    bare.checkin(checkin_body(hostname="db-01", footprint=None, modules=[], ips=[]))
    esm.enroll("never-01")  # enrolled, never checked in
    # A row written by an older esmd: a module without "detail", an integral cpu_percent.
    esm.sql(
        "UPDATE agents SET modules = :modules, footprint = :footprint WHERE agent_id = :agent",
        modules='[{"name": "m", "enabled": true, "mode": "prevention", '
        '"mechanism": "fanotify", "healthy": false}]',
        footprint='{"rss_bytes": 1, "cpu_percent": 0, "disk_bytes": 2}',
        agent=full.agent_id,
    )
    listed = esm.admin.list_agents(limit=10)
    assert listed["count"] == 3
    for agent in listed["data"]:
        assert agent == esm.admin.get_agent(agent["agent_id"])
    assert [a["hostname"] for a in listed["data"]] == ["db-01", "never-01", "web-01"]
    page = esm.admin.list_agents(limit=1, offset=1)
    assert page["count"] == 3 and [a["hostname"] for a in page["data"]] == ["never-01"]
    silent = esm.admin.list_agents(health="disconnected", hostname="NEVER")
    assert [a["hostname"] for a in silent["data"]] == ["never-01"] and silent["count"] == 1
    secret = esm.raw("GET", "/api/v1/agents", headers=esm.admin_header())
    assert b"secret" not in secret.raw and b"enrollment_token" not in secret.raw

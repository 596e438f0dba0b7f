"""Least privilege: credentials never cross between admins and agents, or between agents."""

from __future__ import annotations

import pytest
from esmd_harness import Esm, checkin_body, new_event

from trapsapi import routes
from trapsapi.agent_client import AgentClient
from trapsapi.errors import AuthError


def test_agent_routes_need_an_agent_credential(esm: Esm) -> None:
    agent = esm.enroll()
    before = esm.snapshot()
    cases = {
        "none": {},
        "admin token": esm.admin_header(),
        "wrong secret": {"Authorization": f"Bearer {agent.agent_id}.wrong"},
        "unknown agent": {"Authorization": f"Bearer {'0' * 8}-0000-4000-8000-{'0' * 12}.x"},
        "not a uuid": {"Authorization": "Bearer agent.secret"},
        "basic auth": {"Authorization": "Basic YTpi"},
    }
    for name, headers in cases.items():
        for path, body in (
            (routes.AGENT_CHECKIN, checkin_body()),
            (routes.AGENT_EVENTS, {"events": [new_event()]}),
        ):
            reply = esm.raw("POST", path, body, headers)
            assert reply.status == 401, (name, path, reply.raw)
            assert "\n" not in reply.detail
    assert esm.snapshot() == before


def test_admin_routes_refuse_agent_credentials(esm: Esm) -> None:
    agent = esm.enroll()
    headers = esm.agent_header(agent)
    for method, path in (
        ("GET", routes.AGENTS),
        ("GET", f"{routes.AGENTS}/{agent.agent_id}"),
        ("GET", routes.EVENTS),
        ("GET", routes.HASHES),
        ("GET", routes.ENROLLMENT_TOKENS),
        ("GET", routes.WHOAMI),
    ):
        reply = esm.raw(method, path, headers=headers)
        assert reply.status == 401, (path, reply.raw)
    before = esm.snapshot()
    for method, path, body in (
        ("POST", routes.ENROLLMENT_TOKENS, {}),
        ("PUT", f"{routes.HASHES}/{'a' * 64}", {"verdict": "malware"}),
    ):
        assert esm.raw(method, path, body, headers).status == 401
    assert esm.snapshot() == before


def test_an_agent_cannot_touch_another_agents_records(esm: Esm) -> None:
    alice, mallory = esm.enroll("alice"), esm.enroll("mallory")
    alice.checkin(checkin_body(hostname="alice", outbox_depth=1))
    event = new_event(process_path="/usr/bin/alice-tool")
    alice.upload_events([event])
    # Mallory replays Alice's event ID and tries to smuggle her agent ID in the bodies.
    forged = dict(event, process_path="/tmp/forged")
    ack = mallory.upload_events([forged])
    assert ack["inserted"] == 1  # stored as Mallory's own event, not as Alice's
    reply = esm.raw(
        "POST",
        routes.AGENT_CHECKIN,
        checkin_body(agent_id=alice.agent_id),
        esm.agent_header(mallory),
    )
    assert reply.status == 422 and "agent_id: unknown field" in reply.detail
    mallory.checkin(checkin_body(hostname="mallory", outbox_depth=99))
    shown = esm.admin.get_agent(alice.agent_id)
    assert (shown["hostname"], shown["outbox_depth"]) == ("alice", 1)
    alice_events = esm.admin.list_events(agent_id=alice.agent_id)["data"]
    assert [e["process_path"] for e in alice_events] == ["/usr/bin/alice-tool"]
    mallory_events = esm.admin.list_events(agent_id=mallory.agent_id)["data"]
    assert [(e["hostname"], e["process_path"]) for e in mallory_events] == [
        ("mallory", "/tmp/forged")
    ]


def test_a_revoked_enrollment_token_leaves_enrolled_agents_working(esm: Esm) -> None:
    created = esm.admin.create_token(max_uses=2)
    agent = esm.enroll(token=created["token"])
    esm.admin.revoke_token(created["id"])
    assert agent.checkin(checkin_body())["agent_id"] == agent.agent_id
    with pytest.raises(AuthError):
        esm.enroll(token=created["token"])
    stranger = AgentClient([esm.url], agent.agent_id, created["token"])
    with pytest.raises(AuthError):
        stranger.checkin(checkin_body())
    stranger.close()

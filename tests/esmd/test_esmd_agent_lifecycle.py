"""Agent lifecycle on both databases: credential rotation without re-enrollment, revocation,
forgetting an agent, two live copies of one identity (409), the stop notice and health."""

from __future__ import annotations

import uuid

import pytest
from esmd_harness import Esm, checkin_body, new_event

from trapsapi import routes
from trapsapi.agent_client import AgentClient
from trapsapi.errors import ApiError, AuthError, Conflict, NotFound


def _with_secret(esm: Esm, agent: AgentClient, secret: str) -> AgentClient:
    client = AgentClient([esm.url], agent.agent_id, secret)
    client.secret = secret  # type: ignore[attr-defined]
    esm._clients.append(client)
    return client


def test_rotation_keeps_the_old_secret_until_the_new_one_is_used(esm: Esm) -> None:
    old = esm.enroll("web-01")
    rotated = old.rotate()
    assert rotated["agent_id"] == old.agent_id and rotated["agent_secret"] != old.secret
    # The reply could have been lost: the old secret still works, as does the new one.
    old.checkin(checkin_body())
    new = _with_secret(esm, old, rotated["agent_secret"])
    new.upload_events([new_event()])  # first use of the new secret: the old one dies
    with pytest.raises(AuthError):
        old.checkin(checkin_body())
    new.checkin(checkin_body())
    assert esm.sql("SELECT count(*) FROM audit_log WHERE action = 'agent.rotate'").scalar() == 1


def test_revocation_refuses_the_next_request_with_a_clear_reason(esm: Esm) -> None:
    agent = esm.enroll("lost-laptop")
    pending = agent.rotate()["agent_secret"]
    esm.admin._call("POST", f"{routes.AGENTS}/{agent.agent_id}/revoke")
    for secret in (agent.secret, pending):  # type: ignore[attr-defined]
        reply = esm.raw(
            "POST",
            routes.AGENT_CHECKIN,
            checkin_body(),
            {"Authorization": f"Bearer {agent.agent_id}.{secret}"},
        )
        assert reply.status == 401 and "revoked" in reply.detail
    viewer = esm.user("viewer")
    with pytest.raises(ApiError) as refused:
        viewer._call("POST", f"{routes.AGENTS}/{agent.agent_id}/revoke")
    assert refused.value.status == 403
    with pytest.raises(NotFound):
        esm.admin._call("POST", f"{routes.AGENTS}/{uuid.uuid4()}/revoke")


def test_forgetting_an_agent_deletes_it_and_its_events(esm: Esm) -> None:
    agent = esm.enroll("decommissioned")
    agent.upload_events([new_event(), new_event()])
    other = esm.enroll("kept")
    other.upload_events([new_event()])
    gone = esm.admin._call("DELETE", f"{routes.AGENTS}/{agent.agent_id}")
    assert (gone["hostname"], gone["events_deleted"]) == ("decommissioned", 2)
    assert esm.count("events") == 1
    with pytest.raises(NotFound):
        esm.admin.get_agent(agent.agent_id)
    with pytest.raises(AuthError):
        agent.checkin(checkin_body())


def test_two_live_copies_of_one_identity_get_409(esm: Esm) -> None:
    original = esm.enroll("golden-image")
    clone = _with_secret(esm, original, original.secret)  # type: ignore[attr-defined]
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    original.checkin(checkin_body(instance_id=first))
    original.checkin(checkin_body(instance_id=first))
    clone.checkin(checkin_body(instance_id=second))  # could be a restart: accepted
    with pytest.raises(Conflict) as conflict:
        original.checkin(checkin_body(instance_id=first))  # the replaced instance is back
    assert conflict.value.status == 409 and "enroll" in conflict.value.message
    shown = esm.admin.get_agent(original.agent_id)
    assert shown["health"] == "degraded"
    assert any("two live agents" in issue for issue in shown["issues"])
    # A restart (a new instance ID) is never a conflict.
    clone.checkin(checkin_body(instance_id=uuid.uuid4().hex))


def test_the_stop_notice_shows_the_agent_stopped_until_it_checks_in_again(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    version = agent.checkin(checkin_body(instance_id="a" * 32))["policy"]["version"]
    agent.checkin(checkin_body(instance_id="a" * 32, policy_version=version))
    assert esm.admin.get_agent(agent.agent_id)["health"] == "connected"
    agent.checkin(checkin_body(instance_id="a" * 32, stopping=True, policy_version=version))
    assert esm.admin.get_agent(agent.agent_id)["health"] == "stopped"
    assert [a["hostname"] for a in esm.admin.list_agents(health="stopped")["data"]] == ["web-01"]
    assert esm.admin.list_agents(health="connected")["count"] == 0
    agent.checkin(checkin_body(instance_id="b" * 32, policy_version=version))
    assert esm.admin.get_agent(agent.agent_id)["health"] == "connected"


def test_isolate_unisolate_and_uninstall_results_show_in_the_agents_health(esm: Esm) -> None:
    agent = esm.enroll("laptop-7")
    version = agent.checkin(checkin_body(hostname="laptop-7"))["policy"]["version"]

    def done(kind: str) -> None:
        action = esm.admin.create_action(kind, {"agent_id": agent.agent_id})
        (order,) = agent.checkin(checkin_body(hostname="laptop-7", policy_version=version))[
            "actions"
        ]
        assert order["id"] == action["id"]
        agent.report_action(action["id"], {"state": "succeeded", "result": {}, "detail": ""})

    done("isolate")
    assert esm.admin.get_agent(agent.agent_id)["health"] == "isolated"
    assert [a["hostname"] for a in esm.admin.list_agents(health="isolated")["data"]] == ["laptop-7"]
    done("unisolate")
    assert esm.admin.get_agent(agent.agent_id)["health"] == "connected"
    done("uninstall")
    assert esm.admin.get_agent(agent.agent_id)["health"] == "uninstalled"
    assert esm.admin.list_agents(health="connected")["count"] == 0

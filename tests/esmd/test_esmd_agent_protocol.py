"""Enroll, check in, policy and idempotent event ingest, through the real agent client."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body, new_event

from trapsapi.agent_client import AgentClient, enroll
from trapsapi.errors import AuthError


def test_enroll_returns_an_identity_and_stores_only_a_hash(esm: Esm) -> None:
    token = esm.token(label="lab", max_uses=2)
    reply = enroll(
        [esm.url],
        {
            "token": token,
            "hostname": "db-7",
            "os": "linux",
            "os_version": "6",
            "agent_version": "1",
        },
    )
    assert uuid.UUID(reply["agent_id"]).version == 4
    assert len(reply["agent_secret"]) >= 43
    assert reply["heartbeat_interval_s"] == 3600
    assert reply["servers"] == [esm.url]  # not configured: the URL the agent used
    stored = esm.sql("SELECT secret_hash FROM agents WHERE agent_id = :a", a=reply["agent_id"])
    secret_hash = stored.scalar_one()
    assert reply["agent_secret"] not in secret_hash and len(secret_hash) == 64
    tokens = esm.sql("SELECT token_hash, uses FROM enrollment_tokens").all()
    assert [(t.token_hash != token, t.uses) for t in tokens] == [(True, 1)]
    audit = esm.sql("SELECT actor, action, target FROM audit_log WHERE action = 'agent.enroll'")
    [(actor, _, target)] = audit.all()
    assert actor.startswith("enrollment-token:") and target == reply["agent_id"]
    agent = esm.admin.get_agent(reply["agent_id"])
    assert (agent["hostname"], agent["health"], agent["status"]) == (
        "db-7",
        "disconnected",
        "unprotected",
    )


def test_checkin_updates_the_agent_and_returns_the_policy(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    reply = agent.checkin(checkin_body(hostname="web-01.lan", outbox_depth=7, events_dropped=2))
    assert reply["agent_id"] == agent.agent_id
    assert reply["servers"] == [esm.url]
    assert reply["actions"] == []
    policy = reply["policy"]
    assert policy["heartbeat_interval_s"] == 3600
    malware = policy["modules"]["malware"]
    assert (malware["enabled"], malware["mode"], malware["user_alert"]) == (
        True,
        "prevention",
        True,
    )
    # The shipped default policy: every family the agent implements, as trapsd ships it.
    assert policy["modules"]["restrictions"]["mode"] == "notification"
    assert policy["modules"]["child_process"]["mode"] == "prevention"
    assert policy["modules"]["memfd_noexec"]["enabled"] is False
    assert policy["blocked_hashes"] == [] and policy["allowed_hashes"] == []
    shown = esm.admin.get_agent(agent.agent_id)
    assert shown["hostname"] == "web-01.lan"
    assert shown["health"] == "connected"
    assert shown["status"] == "protected"
    assert (shown["outbox_depth"], shown["events_dropped"]) == (7, 2)
    assert shown["ips"] == ["10.0.0.5"]
    assert shown["footprint"]["rss_bytes"] == 20_000_000
    assert shown["modules"][0]["mechanism"] == "fanotify"
    assert shown["last_checkin_at"] is not None


def test_configured_public_urls_are_handed_to_agents(esm: Esm, live_esm: Any) -> None:
    from esmd.app import create_app

    urls = ["https://esm-a.example:2125", "https://esm-b.example:2125"]
    settings = esm.settings.model_copy(update={"public_urls": urls})
    settings = type(settings).model_validate(settings.model_dump())
    with type(live_esm)(create_app(settings)) as other:
        reply = enroll(
            [other.url],
            {
                "token": esm.token(),
                "hostname": "h",
                "os": "l",
                "os_version": "1",
                "agent_version": "1",
            },
        )
        agent = AgentClient([other.url], reply["agent_id"], reply["agent_secret"])
        assert reply["servers"] == urls
        assert agent.checkin(checkin_body())["servers"] == urls
        agent.close()


def test_a_verdict_change_bumps_the_policy_version(esm: Esm) -> None:
    agent = esm.enroll()
    first = agent.checkin(checkin_body())["policy"]
    evil, good = "e" * 64, "0" * 64
    esm.admin.set_verdict(evil, "malware", "test binary")
    second = agent.checkin(checkin_body(policy_version=first["version"]))["policy"]
    assert second["version"] > first["version"]
    assert second["blocked_hashes"] == [evil]
    esm.admin.set_verdict(good.upper(), "benign")
    third = agent.checkin(checkin_body())["policy"]
    assert third["version"] > second["version"]
    assert (third["blocked_hashes"], third["allowed_hashes"]) == ([evil], [good])
    # The same verdict again changes nothing an agent enforces: same version.
    esm.admin.set_verdict(evil, "malware", "new comment")
    assert agent.checkin(checkin_body())["policy"]["version"] == third["version"]
    esm.admin.unset_verdict(evil)
    fourth = agent.checkin(checkin_body())["policy"]
    assert fourth["version"] > third["version"] and fourth["blocked_hashes"] == []
    assert esm.admin.get_agent(agent.agent_id)["policy_version"] is None


def test_events_are_stored_once_and_stamped(esm: Esm) -> None:
    agent = esm.enroll("host-a")
    agent.checkin(checkin_body(hostname="host-a"))
    batch = [new_event(severity=s) for s in ("low", "high", "critical")]
    ack = agent.upload_events(batch)
    assert ack["inserted"] == 3
    assert sorted(ack["acked"]) == sorted(e["id"] for e in batch)
    again = agent.upload_events([*batch, new_event()])
    assert again["inserted"] == 1 and len(again["acked"]) == 4
    assert esm.count("events") == 4
    events = esm.admin.list_events(agent_id=agent.agent_id)["data"]
    assert {e["hostname"] for e in events} == {"host-a"}
    assert all(e["received_at"] and e["agent_id"] == agent.agent_id for e in events)
    stored = next(e for e in events if e["id"] == batch[0]["id"])
    assert stored["details"] == {"why": "test"} and stored["sha256"] == "ab" * 32


def test_duplicate_ids_inside_one_batch_count_once(esm: Esm) -> None:
    agent = esm.enroll()
    event = new_event()
    ack = agent.upload_events([event, event])
    assert (ack["inserted"], ack["acked"]) == (1, [event["id"]])


def test_the_same_batch_posted_concurrently_adds_each_event_once(esm: Esm) -> None:
    first = esm.enroll()
    second = AgentClient([esm.url], first.agent_id, first.secret)
    batch = [new_event() for _ in range(300)]
    before = esm.count("events")
    barrier = threading.Barrier(2)
    acks: list[Any] = []
    errors: list[BaseException] = []

    def post(client: AgentClient) -> None:
        try:
            barrier.wait()
            acks.append(client.upload_events(batch))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    second.close()
    assert not errors
    assert esm.count("events") == before + 300
    assert sum(a["inserted"] for a in acks) == 300
    assert all(len(a["acked"]) == 300 for a in acks)


def test_many_agents_ingest_in_parallel_without_errors(esm: Esm) -> None:
    agents = [esm.enroll(f"par-{n}") for n in range(4)]
    errors: list[BaseException] = []

    def work(agent: AgentClient) -> None:
        try:
            for _ in range(5):
                agent.upload_events([new_event() for _ in range(50)])
                agent.checkin(checkin_body())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert esm.count("events") == 4 * 5 * 50


def test_wrong_secret_is_refused(esm: Esm) -> None:
    agent = esm.enroll()
    impostor = AgentClient([esm.url], agent.agent_id, "not-the-secret")
    with pytest.raises(AuthError, match="invalid agent credential"):
        impostor.checkin(checkin_body())
    impostor.close()

"""The wake channel carries the news: a broadcast reaches every long-poll, paced, once each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body

from trapsapi import routes
from trapsapi.admin_client import AdminClient
from trapsapi.agent_client import AgentClient

AGENTS = 24
RATE = 40.0  # wake-ups per second: a burst of 4, then one every 25 ms


@pytest.fixture
def paced(esm_settings: Any, live_esm: Any) -> Iterator[Any]:
    """Another esmd on the same database, waking at most ``RATE`` agents per second."""
    from esmd.app import create_app

    settings = esm_settings.model_copy(update={"wake_rate": RATE})
    with type(live_esm)(create_app(settings)) as server:
        yield server


def _body(hostname: str) -> dict[str, Any]:
    return dict(checkin_body(), hostname=hostname)


def _poll(esm: Esm, url: str, agent: AgentClient, version: int) -> tuple[Any, float]:
    other = Esm(url, esm.settings, esm.admin, esm.engine)
    path = f"{routes.AGENT_WAIT}?policy_version={version}&timeout=30&deliver=true"
    reply = other.raw("GET", path, None, esm.agent_header(agent))
    return reply, time.monotonic()


def _hold(esm: Esm, urls: list[str], agents: list[AgentClient], version: int) -> list[Any]:
    """Every agent long-polls (round robin over ``urls``); returns the [(reply, time)] slots."""
    slots: list[Any] = [None] * len(agents)

    def one(n: int) -> None:
        slots[n] = _poll(esm, urls[n % len(urls)], agents[n], version)

    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(len(agents))]
    for thread in threads:
        thread.start()
    slots.append(threads)
    return slots


def _join(slots: list[Any]) -> list[tuple[Any, float]]:
    for thread in slots.pop():
        thread.join(20)
    missing = [n for n, slot in enumerate(slots) if slot is None]
    assert not missing, f"long-polls that did not return: {missing}"
    return slots


def _waits(esm: Esm, url: str) -> int:
    metrics = Esm(url, esm.settings, esm.admin, esm.engine).raw("GET", routes.METRICS)
    for line in metrics.raw.decode().splitlines():
        if line.startswith("esmd_agent_waits "):
            return int(float(line.split()[1]))
    return 0


def _until_held(esm: Esm, urls: list[str], count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(_waits(esm, url) for url in urls) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sum(_waits(esm, url) for url in urls) >= count


def test_the_reply_carries_the_policy_and_the_server_records_it_served(esm: Esm) -> None:
    agent = esm.enroll("fleet-0")
    version = int(agent.checkin(_body("fleet-0"))["policy"]["version"])
    slots = _hold(esm, [esm.url], [agent], version)
    _until_held(esm, [esm.url], 1)
    esm.admin.set_verdict("d" * 64, "malware")
    [(reply, _)] = _join(slots)
    assert reply.status == 200, reply.raw
    body = reply.json
    assert body["reason"] == "policy" and body["policy_version"] == version + 1
    assert body["policy"]["version"] == version + 1
    assert body["policy"]["blocked_hashes"] == ["d" * 64]
    assert body["actions"] == [] and body["report_within_s"] >= 5
    served = esm.sql(
        "SELECT policy_served_version FROM agents WHERE agent_id = :a", a=agent.agent_id
    ).scalar()
    assert served == version + 1
    # The agent applied it and reports so at its next check-in: no drift, no degraded health.
    report = dict(_body("fleet-0"), policy_version=version + 1)
    assert agent.checkin(report)["policy"]["version"] == version + 1
    assert esm.admin.get_agent(agent.agent_id)["health"] == "connected"


def test_a_broadcast_action_reaches_every_long_poll_paced_and_once(esm: Esm, paced: Any) -> None:
    agents = [esm.enroll(f"fleet-{n}") for n in range(AGENTS)]
    version = int(agents[0].checkin(_body("fleet-0"))["policy"]["version"])
    slots = _hold(esm, [paced.url], agents, version)
    _until_held(esm, [paced.url], AGENTS)
    started = time.monotonic()
    admin = AdminClient(paced.url, token=esm.admin.token)  # through the paced server itself
    action = admin.create_action("checkin", {"query": {"hostname": "fleet-*"}})["id"]
    admin.close()
    replies = _join(slots)
    for (reply, _), agent in zip(replies, agents, strict=True):
        assert reply.status == 200, reply.raw
        assert reply.json["reason"] == "pending"
        assert [a["id"] for a in reply.json["actions"]] == [action], agent.agent_id
        assert "policy" not in reply.json  # the policy did not move
    times = sorted(at - started for _, at in replies)
    # A burst of RATE/10, then RATE per second: (24 - 4) / 40 = 0.5 s; no herd.
    assert times[-1] - times[0] > 0.3, times  # (the token bucket itself: test_esmd_wake_overload)
    states = esm.sql(
        "SELECT state, count(*) FROM action_agents WHERE action_id = :a GROUP BY state", a=action
    ).all()
    assert [tuple(s) for s in states] == [("delivered", AGENTS)]
    # Delivered once: the next check-in brings no action again.
    assert agents[0].checkin(_body("fleet-0"))["actions"] == []


def test_news_between_two_polls_is_kept_and_legacy_polls_only_say_why(esm: Esm) -> None:
    agent = esm.enroll("fleet-0")
    version = int(agent.checkin(_body("fleet-0"))["policy"]["version"])
    action = esm.admin.create_action("checkin", {"agent_id": agent.agent_id})["id"]
    started = time.monotonic()
    reply, _ = _poll(esm, esm.url, agent, version)
    assert time.monotonic() - started < 2
    assert [a["id"] for a in reply.json["actions"]] == [action]
    # An agent that does not ask for the news is only told why, and checks in for it.
    second = esm.admin.create_action("checkin", {"agent_id": agent.agent_id})["id"]
    path = f"{routes.AGENT_WAIT}?policy_version={version}&timeout=30"
    legacy = esm.raw("GET", path, None, esm.agent_header(agent))
    assert legacy.json == {"reason": "pending", "policy_version": version}
    assert [a["id"] for a in agent.checkin(_body("fleet-0"))["actions"]] == [second]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_broadcast_from_one_process_reaches_agents_on_both(esm: Esm, paced: Any) -> None:
    """One NOTIFY per action: each process reads which of its waiters are pending."""
    agents = [esm.enroll(f"fleet-{n}") for n in range(AGENTS)]
    version = int(agents[0].checkin(_body("fleet-0"))["policy"]["version"])
    urls = [esm.url, paced.url]
    slots = _hold(esm, urls, agents, version)
    _until_held(esm, urls, AGENTS)
    action = esm.admin.create_action("checkin", {"query": {"hostname": "fleet-*"}})["id"]
    esm.admin.set_verdict("e" * 64, "malware")  # and a policy change on top
    replies = _join(slots)
    for reply, _ in replies:
        assert reply.status == 200, reply.raw
        body = reply.json
        assert [a["id"] for a in body["actions"]] in ([action], []), body
    delivered = esm.sql(
        "SELECT count(*) FROM action_agents WHERE action_id = :a AND state = 'delivered'",
        a=action,
    ).scalar()
    carried = sum(1 for reply, _ in replies if reply.json["actions"])
    assert delivered == carried  # what was marked delivered is what the agents got
    # An agent woken by the policy first gets the action on its next poll: nothing is lost.
    for (reply, _), agent in zip(replies, agents, strict=True):
        if not reply.json["actions"]:
            again, _ = _poll(esm, esm.url, agent, reply.json["policy_version"])
            assert [a["id"] for a in again.json["actions"]] == [action]
    assert (
        esm.sql(
            "SELECT count(*) FROM action_agents WHERE action_id = :a AND state = 'delivered'",
            a=action,
        ).scalar()
        == AGENTS
    )


def _repoll_after_revocation(esm: Esm, url: str) -> None:
    """A re-poll on a kept connection is served from what the server vouched for; once the
    agent is revoked (through ``esm``), its next re-poll on that connection is refused too."""
    import http.client
    from urllib.parse import urlsplit

    agent = esm.enroll("fleet-0")
    version = int(agent.checkin(_body("fleet-0"))["policy"]["version"])
    parts = urlsplit(url)
    path = f"{routes.AGENT_WAIT}?policy_version={version}&timeout=1&deliver=true"
    kept = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)

    def poll(headers: dict[str, str]) -> int:
        kept.request("GET", path, headers=headers)
        reply = kept.getresponse()
        reply.read()
        return reply.status

    try:
        assert poll(esm.agent_header(agent)) == 204
        assert poll(esm.agent_header(agent)) == 204  # the re-poll, vouched for
        wrong = {"Authorization": f"Bearer {agent.agent_id}.not-the-secret"}
        assert poll(wrong) == 401  # another credential on it is checked
        esm.admin.revoke_agent(agent.agent_id)
        assert esm.raw("GET", path, None, esm.agent_header(agent)).status == 401
        deadline = time.monotonic() + 5  # another process hears of it through NOTIFY
        while (status := poll(esm.agent_header(agent))) != 401 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status == 401  # the next request with the revoked secret, on any connection
    finally:
        kept.close()


def test_a_repoll_on_a_kept_connection_is_refused_once_the_agent_is_revoked(esm: Esm) -> None:
    _repoll_after_revocation(esm, esm.url)


def test_postgres_a_revocation_reaches_the_repolls_of_another_process(esm: Esm, paced: Any) -> None:
    if "sqlite" in esm.settings.url:
        pytest.skip("SQLite deployments run one esmd serve process")
    _repoll_after_revocation(esm, paced.url)

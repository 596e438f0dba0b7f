"""The communication-server registry, and wake-ups that cross esmd processes on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body
from sqlalchemy import create_engine

from esmd.services.wake import notify_agents
from trapsapi import routes


@pytest.fixture
def second_esm(esm_settings: Any, live_esm: Any) -> Iterator[Any]:
    """Another esmd on the same database (heartbeats every 0.2 s)."""
    from esmd.app import create_app

    settings = esm_settings.model_copy(update={"server_heartbeat_s": 0.2})
    with type(live_esm)(create_app(settings)) as server:
        yield server


def _servers(esm: Esm) -> list[dict[str, Any]]:
    reply = esm.raw("GET", routes.SERVERS, None, esm.admin_header())
    assert reply.status == 200, reply.raw
    assert reply.json["count"] == len(reply.json["data"])
    return list(reply.json["data"])


def test_each_server_registers_and_agents_learn_the_live_ones(
    esm: Esm, live_esm: Any, second_esm: Any
) -> None:
    other = Esm(second_esm.url, esm.settings, esm.admin, esm.engine)
    agent = esm.enroll()
    agent.checkin(checkin_body())  # the first server learns its URL (it listens on port 0)
    other.raw("GET", routes.HEALTHZ)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        rows = _servers(esm)
        if {r["address"] for r in rows} >= {esm.url, other.url} or len(rows) > 2:
            break
        time.sleep(0.1)
    by_address = {r["address"]: r for r in rows}
    assert set(by_address) == {esm.url, other.url}, rows
    assert all(r["alive"] and r["version"] for r in rows)
    # The second server knows the first (its heartbeat read the live list) and tells agents.
    time.sleep(0.5)
    through_other = type(agent)([other.url], agent.agent_id, agent.secret)
    assert through_other.checkin(checkin_body())["servers"] == [other.url, esm.url]
    through_other.close()
    time.sleep(0.5)
    served = {r["address"]: r["agents_served"] for r in _servers(esm)}
    assert served[other.url] == 1
    # Readers only; agents and anonymous callers are refused.
    assert esm.raw("GET", routes.SERVERS).status == 401
    assert esm.raw("GET", routes.SERVERS, None, esm.agent_header(agent)).status == 401
    assert esm.user("viewer").list_servers()["count"] == 2


def test_a_stopped_server_is_listed_as_gone(esm: Esm, esm_settings: Any, live_esm: Any) -> None:
    from esmd.app import create_app

    settings = esm_settings.model_copy(update={"server_heartbeat_s": 0.2})
    with type(live_esm)(create_app(settings)) as server:
        url = server.url
        Esm(url, esm.settings, esm.admin, esm.engine).raw("GET", routes.HEALTHZ)
        time.sleep(0.5)
        assert [r["alive"] for r in _servers(esm) if r["address"] == url] == [True]
    assert [r["alive"] for r in _servers(esm) if r["address"] == url] == [False]


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_postgres_wakes_agents_waiting_on_another_process(esm: Esm, second_esm: Any) -> None:
    """A change made through one server (or by any client of the database) reaches an agent
    long-polling another server through LISTEN/NOTIFY, not through process memory."""
    other = Esm(second_esm.url, esm.settings, esm.admin, esm.engine)
    agent = esm.enroll()
    version = int(agent.checkin(checkin_body())["policy"]["version"])
    path = f"{routes.AGENT_WAIT}?policy_version={version}&timeout=30"
    replies: list[Any] = []

    def poll() -> None:
        started = time.monotonic()
        replies.append((other.raw("GET", path, None, esm.agent_header(agent)), started))

    waiting = threading.Thread(target=poll)
    waiting.start()
    time.sleep(0.5)
    esm.admin.set_verdict("b" * 64, "malware")  # through the first server
    waiting.join(10)
    reply, started = replies[0]
    assert reply.json == {"reason": "policy", "policy_version": version + 1}
    assert time.monotonic() - started < 3

    # notify_agents from a plain database client (say, the action centre in any process).
    waiting = threading.Thread(target=poll)
    replies.clear()
    path = f"{routes.AGENT_WAIT}?policy_version={version + 1}&timeout=30"
    waiting.start()
    time.sleep(0.5)
    engine = create_engine(esm.settings.url)
    with engine.begin() as connection:
        notify_agents(connection, [agent.agent_id])
    engine.dispose()
    waiting.join(10)
    assert replies[0][0].json == {"reason": "pending", "policy_version": version + 1}

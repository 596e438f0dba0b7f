"""The wake channel (long-poll), overload protection (429 + Retry-After) and the fast path."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from esmd_harness import Esm, checkin_body

from esmd.metrics import Metrics
from esmd.services.wake import Notifier, notify_agents
from trapsapi import routes
from trapsapi.agent_client import AgentClient


def _app(server: Any) -> Any:
    return server.server.config.app


def _wait(esm: Esm, agent: AgentClient, version: int, timeout: int, url: str | None = None) -> Any:
    target = esm if url is None else Esm(url, esm.settings, esm.admin, esm.engine)
    path = f"{routes.AGENT_WAIT}?policy_version={version}&timeout={timeout}"
    return target.raw("GET", path, None, esm.agent_header(agent))


class _Background:
    """A long-poll running in a thread: its reply and how long it took."""

    def __init__(self, call: Any) -> None:
        self.reply: Any = None
        self.seconds = 0.0
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call: Any) -> None:
        started = time.monotonic()
        self.reply = call()
        self.seconds = time.monotonic() - started

    def result(self, timeout: float = 20) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the long-poll did not return"
        return self.reply


def _policy_version(agent: AgentClient) -> int:
    return int(agent.checkin(checkin_body())["policy"]["version"])


def test_wait_times_out_with_204_and_wakes_on_a_policy_change(esm: Esm) -> None:
    agent = esm.enroll()
    version = _policy_version(agent)
    quiet = _wait(esm, agent, version, 1)
    assert quiet.status == 204 and quiet.raw == b""

    waiting = _Background(lambda: _wait(esm, agent, version, 30))
    time.sleep(0.5)  # the poll is held
    esm.admin.set_verdict("a" * 64, "malware")  # bumps the policy version
    reply = waiting.result()
    assert reply.status == 200, reply.raw
    assert reply.json == {"reason": "policy", "policy_version": version + 1}
    assert waiting.seconds < 2.5
    # An agent that is behind does not wait at all.
    assert _wait(esm, agent, version, 30).json["reason"] == "policy"
    assert _policy_version(agent) == version + 1


def test_notify_agents_wakes_that_agent_only_and_is_kept_when_it_is_not_waiting(
    esm: Esm, live_esm: Any
) -> None:
    db = _app(live_esm).state.db
    first, second = esm.enroll("a"), esm.enroll("b")
    version = _policy_version(first)
    waiting = _Background(lambda: _wait(esm, first, version, 30))
    other = _Background(lambda: _wait(esm, second, version, 2))
    time.sleep(0.5)
    with db.write() as connection:
        notify_agents(connection, [first.agent_id])
    assert waiting.result().json == {"reason": "pending", "policy_version": version}
    assert other.result().status == 204  # not woken by the other agent's news
    # A rolled-back transaction wakes nobody.
    with pytest.raises(RuntimeError), db.write() as connection:
        notify_agents(connection, [second.agent_id])
        raise RuntimeError("rolled back")
    assert _wait(esm, second, version, 1).status == 204
    # News for an agent between two polls waits for its next poll.
    with db.write() as connection:
        notify_agents(connection, [second.agent_id])
    time.sleep(0.2)
    started = time.monotonic()
    assert _wait(esm, second, version, 30).json["reason"] == "pending"
    assert time.monotonic() - started < 1


def test_wait_refuses_bad_input_and_other_credentials(esm: Esm) -> None:
    agent = esm.enroll()
    headers = esm.agent_header(agent)
    for query, field in (("", "policy_version"), ("?policy_version=-1", "policy_version")):
        reply = esm.raw("GET", routes.AGENT_WAIT + query, None, headers)
        assert reply.status == 422 and field in reply.detail, reply.raw
    reply = esm.raw("GET", f"{routes.AGENT_WAIT}?policy_version=1&timeout=61", None, headers)
    assert reply.status == 422 and "timeout" in reply.detail
    assert esm.raw("GET", f"{routes.AGENT_WAIT}?policy_version=1").status == 401
    assert (
        esm.raw("GET", f"{routes.AGENT_WAIT}?policy_version=1", None, esm.admin_header()).status
        == 401
    )
    bad = {"Authorization": f"Bearer {agent.agent_id}.wrong"}
    assert esm.raw("GET", f"{routes.AGENT_WAIT}?policy_version=1", None, bad).status == 401


def test_a_policy_broadcast_is_paced_by_the_token_bucket() -> None:
    """1,000 waiters at 2,000 wake-ups/s: one batch at once, the rest at the rate, no herd."""

    async def scenario() -> list[float]:
        notifier = Notifier(Metrics(), wake_rate=2000.0)
        notifier.start(1)
        started = time.monotonic()
        woken: list[float] = []

        async def one(n: int) -> None:
            wake = await notifier.wait(f"agent-{n}", 1, 10)
            assert wake is not None and wake.reason == "policy" and wake.policy_version == 2
            woken.append(time.monotonic() - started)

        tasks = [asyncio.create_task(one(n)) for n in range(1000)]
        await asyncio.sleep(0.05)
        assert notifier.waiting == 1000
        notifier.policy_moved(2)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        await notifier.stop()
        return sorted(woken)

    woken = asyncio.run(scenario())
    assert len(woken) == 1000
    first = woken[0]
    # A burst of 0.1 s worth (200), then (1000 - 200) / 2000 = 0.4 s; never faster.
    assert 0.35 < woken[-1] - first < 1.5
    for t in (0.1, 0.2, 0.3):
        assert sum(1 for w in woken if w - first <= t) <= 200 + 2000 * t + 20


@pytest.fixture
def busy_esm(esm_settings: Any, live_esm: Any) -> Iterator[str]:
    from esmd.app import create_app

    settings = esm_settings.model_copy(update={"max_in_flight": 1, "retry_after_s": 3})
    with type(live_esm)(create_app(settings)) as server:
        yield server.url


def test_beyond_the_in_flight_limit_the_server_answers_429_with_jittered_retry_after(
    esm: Esm, busy_esm: str
) -> None:
    agent = esm.enroll()
    parts = urlsplit(busy_esm)
    busy = Esm(busy_esm, esm.settings, esm.admin, esm.engine)
    headers = esm.agent_header(agent)
    # One check-in in flight: headers sent, the body still coming.
    held = socket.create_connection((parts.hostname or "", parts.port or 80))
    try:
        held.sendall(
            (
                f"POST {routes.AGENT_CHECKIN} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: {headers['Authorization']}\r\n"
                "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
            ).encode()
        )
        time.sleep(0.3)
        waits = set()
        for _ in range(12):
            reply = busy.raw("POST", routes.AGENT_CHECKIN, checkin_body(), headers)
            assert reply.status == 429, reply.raw
            assert reply.detail == "server busy: too many requests in flight; retry later"
            waits.add(int(reply.headers["retry-after"]))
        assert waits <= {3, 4, 5, 6} and len(waits) > 1
        # Health and the wake channel stay available under overload.
        assert busy.raw("GET", routes.HEALTHZ).status == 200
        assert busy.raw(
            "GET", f"{routes.AGENT_WAIT}?policy_version=0&timeout=1", None, headers
        ).status in (200, 204)
    finally:
        held.close()
    time.sleep(0.3)
    assert busy.raw("POST", routes.AGENT_CHECKIN, checkin_body(), headers).status == 200
    metrics = busy.raw("GET", routes.METRICS).raw.decode()
    assert "esmd_overloaded_total 12" in metrics


def test_the_fast_path_answers_like_the_declared_routes(esm: Esm) -> None:
    """Same reply as the FastAPI route would give, including when it hands over."""
    agent = esm.enroll()
    headers = esm.agent_header(agent)
    fast = esm.raw("POST", routes.AGENT_CHECKIN, checkin_body(), headers)
    assert fast.status == 200 and fast.headers["content-type"] == "application/json"
    assert set(fast.json) == {"agent_id", "server_time", "policy", "actions", "servers"}
    # Charset parameters are fine; a text body is handed to FastAPI and refused the same way.
    typed = dict(headers, **{"Content-Type": "application/json; charset=utf-8"})
    assert esm.raw("POST", routes.AGENT_CHECKIN, checkin_body(), typed).status == 200
    # Without a Content-Type the declared FastAPI route answers, and refuses it as before.
    parts = urlsplit(esm.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    conn.request("POST", routes.AGENT_CHECKIN, json.dumps(checkin_body()), headers)
    response = conn.getresponse()
    reply = json.loads(response.read())
    assert response.status == 422 and set(reply) == {"detail"} and "\n" not in reply["detail"]
    conn.close()
    spec = esm.raw("GET", "/openapi.json").json
    assert "post" in spec["paths"][routes.AGENT_CHECKIN]
    assert "get" in spec["paths"][routes.AGENT_WAIT]

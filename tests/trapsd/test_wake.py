"""The agent side of scale: the wake channel, Retry-After with jitter, jittered heartbeats.

Against a real esmd (SQLite) served in this process.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from agent_helpers import wait_for

from trapsapi import routes
from trapsapi.agent_client import AgentClient, enroll
from trapsapi.wire import CheckinRequest
from trapsd.checkin import Comms
from trapsd.config import AgentSettings
from trapsd.identity import Identity, save_identity
from trapsd.outbox import Outbox
from trapsd.wake import Waker


def _request() -> CheckinRequest:
    return {
        "hostname": "wake-test",
        "os": "Linux",
        "os_version": "x",
        "agent_version": "0",
        "ips": [],
        "modules": [],
        "footprint": None,
        "policy_version": None,
        "outbox_depth": 0,
        "events_dropped": 0,
    }


def _identity(url: str, admin: Any) -> Identity:
    token = admin.create_token(label="wake")["token"]
    reply = enroll(
        [url],
        {
            "token": token,
            "hostname": "wake-test",
            "os": "linux",
            "os_version": "x",
            "agent_version": "0",
        },
    )
    return Identity(reply["agent_id"], reply["agent_secret"], [url])


@pytest.fixture
def link(settings: AgentSettings, tmp_path: Path, live_esm: Any, admin: Any) -> Iterator[Any]:
    """Comms (with its real esmd) and a Waker, stopped afterwards."""
    identity = _identity(live_esm.url, admin)
    save_identity(settings.state_dir, identity)
    box = Outbox(tmp_path / "o.db", 1 << 20)
    replies: list[Any] = []
    news: list[Any] = []

    def client(timeout: float) -> AgentClient:
        return AgentClient(identity.servers, identity.agent_id, identity.agent_secret, timeout)

    waker = Waker(
        settings,
        client,
        lambda: comms.policy_version,
        lambda _r: comms.wake(),
        lambda r: comms.news(r),
    )
    # As in the daemon: each check-in kicks the waker (it sleeps until the first one).
    comms = Comms(settings, identity, box, _request, replies.append, waker.kick, news.append)
    comms.start()
    waker.start()
    try:
        yield comms, waker, replies, news, identity
    finally:
        waker.stop()
        comms.stop()
        box.close()


def test_a_policy_change_reaches_the_agent_in_the_wake_reply(link: Any, admin: Any) -> None:
    comms, waker, replies, news, _ = link
    first = wait_for(lambda: comms.policy_version, timeout=10)
    comms.set_heartbeat(3600)  # no heartbeat can explain what follows
    checkins = len(replies)
    time.sleep(0.5)  # the long-poll is held
    changed = time.monotonic()
    admin.set_verdict("c" * 64, "malware")
    wait_for(lambda: comms.policy_version == first + 1 or None, timeout=5)
    assert time.monotonic() - changed < 2.0
    assert news[-1]["policy"]["blocked_hashes"] == ["c" * 64]
    assert len(replies) == checkins  # no check-in was needed to bring it
    assert waker.wakeups == 1
    # The version applied is reported by a check-in within the server's window, not at once.
    window = float(news[-1]["report_within_s"])
    assert 5 <= window and comms._next_heartbeat <= time.monotonic() + window


def test_an_action_reaches_the_agent_in_the_wake_reply(link: Any, admin: Any) -> None:
    comms, _, replies, news, identity = link
    wait_for(lambda: comms.policy_version, timeout=10)
    comms.set_heartbeat(3600)
    checkins = len(replies)
    time.sleep(0.5)
    created = time.monotonic()
    action = admin.create_action("checkin", {"agent_id": identity.agent_id})["id"]
    wait_for(lambda: (news and news[-1].get("actions")) or None, timeout=5)
    assert time.monotonic() - created < 2.0
    assert [a["id"] for a in news[-1]["actions"]] == [action]
    assert len(replies) == checkins
    assert admin.get_action(action)["progress"] == {"delivered": 1}


def test_without_news_the_wake_up_brings_a_check_in(
    settings: AgentSettings, tmp_path: Path, live_esm: Any, admin: Any
) -> None:
    """A waker that does not take the news (or a server that does not send it) checks in."""
    identity = _identity(live_esm.url, admin)
    box = Outbox(tmp_path / "o.db", 1 << 20)
    replies: list[Any] = []

    def client(timeout: float) -> AgentClient:
        return AgentClient(identity.servers, identity.agent_id, identity.agent_secret, timeout)

    waker = Waker(settings, client, lambda: comms.policy_version, lambda _r: comms.wake())
    comms = Comms(settings, identity, box, _request, replies.append, waker.kick)
    comms.start()
    waker.start()
    try:
        first = wait_for(lambda: comms.policy_version, timeout=10)
        comms.set_heartbeat(3600)
        time.sleep(0.5)
        admin.set_verdict("f" * 64, "malware")
        wait_for(lambda: comms.policy_version == first + 1 or None, timeout=5)
        assert replies[-1]["policy"]["blocked_hashes"] == ["f" * 64]
    finally:
        waker.stop()
        comms.stop()
        box.close()


def test_a_stopped_waker_ends_its_held_poll(link: Any) -> None:
    comms, waker, *_ = link
    wait_for(lambda: comms.policy_version, timeout=10)
    time.sleep(1.5)  # past the first second: the poll is held by the server
    assert waker._client is not None
    started = time.monotonic()
    waker.stop()
    assert time.monotonic() - started < 1.0
    assert not waker._thread.is_alive()


@pytest.fixture
def busy_url(esm_settings: Any, live_esm: Any) -> Iterator[str]:
    from esmd.app import create_app

    settings = esm_settings.model_copy(update={"max_in_flight": 1, "retry_after_s": 4})
    with type(live_esm)(create_app(settings)) as server:
        yield server.url


def test_a_429_is_honoured_with_jitter_on_top_of_retry_after(
    settings: AgentSettings, tmp_path: Path, admin: Any, live_esm: Any, busy_url: str
) -> None:
    identity = _identity(live_esm.url, admin)
    identity.servers = [busy_url]
    box = Outbox(tmp_path / "o.db", 1 << 20)
    comms = Comms(settings, identity, box, _request, lambda _r: None)
    parts = urlsplit(busy_url)
    held = socket.create_connection((parts.hostname or "", parts.port or 80))
    held.sendall(
        f"POST {routes.AGENT_CHECKIN} HTTP/1.1\r\nHost: x\r\nContent-Length: 99\r\n\r\n{{".encode()
    )
    time.sleep(0.3)
    delays = []
    try:
        for _ in range(8):
            before = time.monotonic()
            result = comms._checkin()
            assert not result["ok"] and "server busy" in result["error"]
            delays.append(comms._retry_at - before)
    finally:
        held.close()
        comms.client.close()
        box.close()
    # Retry-After is 4 to 8 s (server jitter); the agent waits that times 1 to 1.5.
    assert all(4 <= d <= 8 * 1.5 + 0.5 for d in delays), delays
    assert len({round(d, 3) for d in delays}) == len(delays)


def test_heartbeats_are_spread_around_the_interval(settings: AgentSettings, tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", 1 << 20)
    comms = Comms(settings, Identity("a", "s", ["http://127.0.0.1:9"]), box, _request, print)
    samples = [comms._jittered(3600) for _ in range(2000)]
    box.close()
    comms.client.close()
    assert 3600 * 0.9 <= min(samples) and max(samples) <= 3600 * 1.1
    assert max(samples) - min(samples) > 3600 * 0.15  # really spread, not a constant
    assert abs(statistics.mean(samples) - 3600) < 3600 * 0.01

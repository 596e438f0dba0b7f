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

    def client(timeout: float) -> AgentClient:
        return AgentClient(identity.servers, identity.agent_id, identity.agent_secret, timeout)

    waker = Waker(settings, client, lambda: comms.policy_version, lambda _r: comms.wake())
    # As in the daemon: each check-in kicks the waker (it sleeps until the first one).
    comms = Comms(settings, identity, box, _request, replies.append, waker.kick)
    comms.start()
    waker.start()
    try:
        yield comms, waker, replies
    finally:
        waker.stop()
        comms.stop()
        box.close()


def test_a_policy_change_reaches_the_agent_through_the_wake_channel(link: Any, admin: Any) -> None:
    comms, waker, replies = link
    first = wait_for(lambda: comms.policy_version, timeout=10)
    comms.set_heartbeat(3600)  # no heartbeat can explain what follows
    time.sleep(0.5)  # the long-poll is held
    changed = time.monotonic()
    admin.set_verdict("c" * 64, "malware")
    wait_for(lambda: comms.policy_version == first + 1 or None, timeout=5)
    assert time.monotonic() - changed < 2.0
    assert replies[-1]["policy"]["blocked_hashes"] == ["c" * 64]
    assert waker.wakeups == 1


def test_a_stopped_waker_ends_its_held_poll(link: Any) -> None:
    comms, waker, _ = link
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

"""The ESM link against a small scripted server: failover, ack-only deletion, a poison event.

The real esmd is covered by test_agent_with_esm.py; this fake lets the test decide what the
server acknowledges, which a correct server never varies.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import free_url, policy_for, wait_for

from trapsapi import routes
from trapsapi.wire import CheckinRequest
from trapsd.checkin import Comms
from trapsd.config import AgentSettings
from trapsd.events import Detection, build_event
from trapsd.identity import Identity, load_identity, save_identity
from trapsd.outbox import Outbox


class FakeEsm:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.checkins = 0
        self.ack_limit: int | None = None  # acknowledge only the first N of a batch
        self.refuse_path = "poison"  # 422 for any batch holding an event with this path
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == routes.AGENT_CHECKIN:
                    fake.checkins += 1
                    reply: Any = {
                        "agent_id": "a-1",
                        "server_time": "2026-01-01T00:00:00Z",
                        "policy": dict(policy_for(["ab" * 32], version=9).wire or {}),
                        "actions": [],
                        "servers": [fake.url, "http://backup.example:2125"],
                    }
                    return self.reply(200, reply)
                events = body["events"]
                if any(e["process_path"] == fake.refuse_path for e in events):
                    return self.reply(422, {"detail": "events.0: bad"})
                fake.received.extend(events)
                acked = [e["id"] for e in events][: fake.ack_limit]
                self.reply(200, {"acked": acked, "inserted": len(acked)})

            def reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def esm() -> Iterator[FakeEsm]:
    server = FakeEsm()
    yield server
    server.close()


def request() -> CheckinRequest:
    return {
        "hostname": "h",
        "os": "Linux",
        "os_version": "x",
        "agent_version": "0",
        "ips": [],
        "modules": [],
        "footprint": None,
        "policy_version": None,
        "outbox_depth": 0,
        "events_dropped": 0,
        "instance_id": "i-1",
        "stopping": False,
    }


def comms_for(settings: AgentSettings, servers: list[str], box: Outbox) -> Comms:
    identity = Identity("a-1", "secret", servers)
    save_identity(settings.state_dir, identity)
    replies: list[Any] = []
    comms = Comms(settings, identity, box, request, replies.append)
    comms.replies = replies  # type: ignore[attr-defined]
    return comms


def detections(*paths: str) -> list[Any]:
    return [build_event(Detection("prevented", p, "ab" * 32, 1)) for p in paths]


def test_failover_then_the_advertised_servers_are_kept(
    esm: FakeEsm, settings: AgentSettings, tmp_path: Path
) -> None:
    box = Outbox(tmp_path / "o.db", 1 << 20)
    dead = free_url()
    comms = comms_for(settings, [dead, esm.url], box)
    comms.start()
    try:
        result = comms.checkin_now(10)
        assert result["ok"] and result["server"] == esm.url and result["policy_version"] == 9
        assert comms.replies[0]["policy"]["version"] == 9  # type: ignore[attr-defined]
        assert load_identity(settings.state_dir).servers == [
            dead,
            esm.url,
            "http://backup.example:2125",
        ]
    finally:
        comms.stop()
        box.close()


def test_only_acknowledged_events_leave_the_outbox(
    esm: FakeEsm, settings: AgentSettings, tmp_path: Path
) -> None:
    box = Outbox(tmp_path / "o.db", 1 << 20)
    box.add(detections("/a", "/b", "/c"))
    esm.ack_limit = 1
    comms = comms_for(settings, [esm.url], box)
    comms.start()
    try:
        wait_for(lambda: box.depth == 0, 10)  # one per round, every one acknowledged in turn
        ids = [e["id"] for e in esm.received]
        assert len(set(ids)) == 3  # resent until acknowledged: the server deduplicates
        assert esm.checkins >= 1
    finally:
        comms.stop()
        box.close()


def test_an_event_the_server_refuses_is_isolated_and_counted(
    esm: FakeEsm, settings: AgentSettings, tmp_path: Path
) -> None:
    box = Outbox(tmp_path / "o.db", 1 << 20)
    box.add(detections("/a", "poison", "/b", "/c"))
    comms = comms_for(settings, [esm.url], box)
    comms.start()
    try:
        wait_for(lambda: box.depth == 0 and len(esm.received) == 4, 10)
        real = [e for e in esm.received if e["module"] != "agent"]
        assert sorted(e["process_path"] for e in real) == ["/a", "/b", "/c"]
        assert box.dropped == 1  # reported on every check-in, never silent
        (gap,) = [e for e in esm.received if e["module"] == "agent"]  # and as a gap record
        assert (gap["details"]["kind"], gap["details"]["dropped"]) == ("gap", 1)
    finally:
        comms.stop()
        box.close()


def test_an_unreachable_server_backs_off(settings: AgentSettings, tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", 1 << 20)
    comms = comms_for(settings, [free_url()], box)
    comms.start()
    try:
        wait_for(lambda: comms.failures >= 2, 5)
        result = comms.checkin_now(5)  # an explicit request ignores the backoff
        assert not result["ok"] and result["exit_code"] == 3
        assert "connection refused" in result["error"]
    finally:
        comms.stop()
        box.close()


def test_a_backlog_is_replayed_at_the_configured_rate(
    esm: FakeEsm, settings: AgentSettings, tmp_path: Path
) -> None:
    settings.batch_size, settings.replay_events_per_s = 10, 100.0
    box = Outbox(tmp_path / "o.db", 1 << 20)
    box.add(detections(*(f"/e{i}" for i in range(50))))
    comms = comms_for(settings, [esm.url], box)
    started = time.monotonic()
    comms.start()
    try:
        wait_for(lambda: box.depth == 0, 20)
        # Five batches of ten at 100 events/s: four pauses of 0.1 s at the very least.
        assert time.monotonic() - started >= 0.4
        assert len({e["id"] for e in esm.received}) == 50
    finally:
        comms.stop()
        box.close()

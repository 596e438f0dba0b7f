"""Bad input anywhere: a 4xx with a one-line detail naming the problem, and no state change."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from esmd_harness import Esm, checkin_body, new_event
from sqlalchemy.exc import OperationalError

from trapsapi import routes


@pytest.fixture
def agent_headers(esm: Esm) -> dict[str, str]:
    return esm.agent_header(esm.enroll())


def _assert_refused(esm: Esm, reply: Any, status: int, needle: str) -> None:
    assert reply.status == status, reply.raw
    assert reply.headers["content-type"] == "application/json"
    detail = reply.detail
    assert needle in detail, detail
    assert "\n" not in detail and "Traceback" not in detail and len(detail) <= 300


BAD_EVENTS = [
    ({"events": [new_event(sha256="xyz")]}, "events.0.sha256: must be 64 hexadecimal characters"),
    ({"events": [new_event(color="red")]}, "events.0.color: unknown field"),
    ({"events": [new_event(severity="apocalyptic")]}, "events.0.severity: Input should be"),
    ({"events": [new_event(id="not-a-uuid")]}, "events.0.id:"),
    ({"events": [new_event(time="yesterday")]}, "events.0.time:"),
    ({"events": []}, "events: List should have at least 1 item"),
    ({"events": [new_event() for _ in range(1001)]}, "events: List should have at most 1000"),
    ({"events": [new_event(process_path="/tmp/a\x00b")]}, "events.0.process_path: must not"),
    ({"events": [new_event(pid=2**70)]}, "events.0.pid: out of range"),
    ({"events": [new_event(cmdline="x" * 9000)]}, "events.0.cmdline: String should have at most"),
    ({"events": [new_event(details={"k": "\udfff"})]}, "events.0.details.k: must be valid Uni"),
    ({"events": [new_event(details={"a": [{"b": "\x00"}]})]}, "events.0.details.a.0.b: must not"),
    ("DETAILS_INFINITY", "events.0.details.n: must be a finite number"),
    ({"evnts": []}, "events: field required"),
    ([1, 2], "body: Input should be a valid dictionary"),
]


def test_bad_event_batches_are_refused_and_store_nothing(
    esm: Esm, agent_headers: dict[str, str]
) -> None:
    before = esm.snapshot()
    for body, needle in BAD_EVENTS:
        if body == "DETAILS_INFINITY":  # json.dumps cannot write it; the wire can
            body = json.dumps({"events": [new_event(details={})]}).replace(
                '"details": {}', '"details": {"n": 1e400}'
            )
        reply = esm.raw("POST", routes.AGENT_EVENTS, body, agent_headers)
        _assert_refused(esm, reply, 422, needle)
    # One bad event spoils the batch: the valid ones next to it are not stored either.
    mixed = {"events": [new_event(), new_event(sha256="bad")]}
    _assert_refused(esm, esm.raw("POST", routes.AGENT_EVENTS, mixed, agent_headers), 422, "1.sha")
    assert esm.snapshot() == before


MALFORMED = [b"{", b'{"events": [', b"not json at all", b'{"events": [1,]}', b"\xff\xfe"]


def test_malformed_json(esm: Esm, agent_headers: dict[str, str]) -> None:
    before = esm.snapshot()
    for payload in MALFORMED:
        for path, headers in (
            (routes.AGENT_EVENTS, agent_headers),
            (routes.AGENT_CHECKIN, agent_headers),
            (routes.ENROLLMENT_TOKENS, esm.admin_header()),
            (routes.LOGIN, {}),
            (routes.AGENT_ENROLL, {}),
        ):
            reply = esm.raw("POST", path, payload, headers)
            assert 400 <= reply.status < 500, (payload, path, reply.raw)
            assert "\n" not in reply.detail
    reply = esm.raw("POST", routes.AGENT_EVENTS, b"{", agent_headers)
    assert reply.detail.startswith("malformed JSON in the request body: Expecting")
    assert esm.snapshot() == before


def test_bad_checkins_change_nothing(esm: Esm, agent_headers: dict[str, str]) -> None:
    before = esm.snapshot()
    agent_row = esm.sql("SELECT hostname, last_checkin_at FROM agents").one()
    for body, needle in (
        (checkin_body(hostname=""), "hostname: String should have at least 1 character"),
        (checkin_body(outbox_depth=-1), "outbox_depth: Input should be greater than"),
        (checkin_body(ips=["10.0.0.1"] * 65), "ips: List should have at most 64"),
        (checkin_body(modules=[{"name": "x"}]), "modules.0.enabled: field required"),
        (checkin_body(events_dropped=2**64), "events_dropped: out of range"),
        (checkin_body(hostname="a\x00b"), "hostname: must not contain NUL"),
        (checkin_body(footprint={"rss_bytes": "lots"}), "footprint.rss_bytes:"),
        (
            checkin_body(modules=[dict(checkin_body()["modules"][0], detail="a\x00")]),
            "modules.0.detail: must not contain NUL",
        ),
        (
            json.dumps(checkin_body()).replace('"cpu_percent": 0.05', '"cpu_percent": 1e999'),
            "footprint.cpu_percent: must be a finite number",
        ),
    ):
        reply = esm.raw("POST", routes.AGENT_CHECKIN, body, agent_headers)
        _assert_refused(esm, reply, 422, needle)
    assert esm.snapshot() == before
    assert esm.sql("SELECT hostname, last_checkin_at FROM agents").one() == agent_row


def test_bad_admin_input(esm: Esm) -> None:
    esm.admin.set_verdict("d" * 64, "malware")
    before = esm.snapshot()
    auth = esm.admin_header()
    cases: list[tuple[str, str, Any, int, str]] = [
        ("GET", f"{routes.EVENTS}?limit=0", None, 422, "limit: Input should be greater than"),
        ("GET", f"{routes.EVENTS}?limit=1001", None, 422, "limit: Input should be less than"),
        ("GET", f"{routes.EVENTS}?offset=-1", None, 422, "offset:"),
        ("GET", f"{routes.EVENTS}?severity=urgent", None, 422, "severity: Input should be"),
        ("GET", f"{routes.EVENTS}?since=last+tuesday", None, 422, "since: expected an ISO-8601"),
        ("GET", f"{routes.AGENTS}?health=sleepy", None, 422, "health: Input should be"),
        ("GET", f"{routes.AGENTS}?limit=abc", None, 422, "limit: Input should be a valid integer"),
        ("GET", f"{routes.HASHES}/abc", None, 422, "sha256: must be 64 hexadecimal"),
        ("PUT", f"{routes.HASHES}/{'z' * 64}", {"verdict": "malware"}, 422, "sha256: must be"),
        ("PUT", f"{routes.HASHES}/{'d' * 64}", {"verdict": "evil"}, 422, "verdict: Input should"),
        ("PUT", f"{routes.HASHES}/{'d' * 64}", {"verdict": "benign", "x": 1}, 422, "x: unknown"),
        ("PUT", f"{routes.HASHES}/{'d' * 64}", None, 422, "body: field required"),
        ("DELETE", f"{routes.HASHES}/{'f' * 64}", None, 404, "no verdict for"),
        ("POST", routes.ENROLLMENT_TOKENS, {"max_uses": 0}, 422, "max_uses: Input should be"),
        ("POST", routes.ENROLLMENT_TOKENS, {"expires_in_s": 1}, 422, "expires_in_s:"),
        ("POST", routes.ENROLLMENT_TOKENS, {"role": "superuser"}, 422, "role: unknown field"),
        ("POST", routes.LOGIN, {"username": "admin"}, 422, "password: field required"),
        ("GET", f"{routes.AGENTS}/nope", None, 404, "no agent 'nope'"),
        ("GET", "/api/v1/nothing-here", None, 404, "Not Found"),
        ("PATCH", routes.AGENTS, None, 405, "Method Not Allowed"),
    ]
    for method, path, body, status, needle in cases:
        _assert_refused(esm, esm.raw(method, path, body, auth), status, needle)
    assert esm.snapshot() == before
    assert esm.admin.get_hash("d" * 64)["verdict"] == "malware"


def test_body_above_the_limit_by_content_length(esm: Esm, agent_headers: dict[str, str]) -> None:
    before = esm.snapshot()
    headers = dict(agent_headers, **{"Content-Length": str(4 * 1024 * 1024 + 1)})
    reply = esm.raw("POST", routes.AGENT_EVENTS, b"{}", headers)
    _assert_refused(esm, reply, 413, "request body larger than 4194304 bytes")
    assert esm.snapshot() == before


@pytest.fixture
def small_esm(esm_settings: Any, live_esm: Any) -> Iterator[str]:
    from esmd.app import create_app

    settings = esm_settings.model_copy(update={"max_body_bytes": 64 * 1024})
    with type(live_esm)(create_app(settings)) as server:
        yield server.url


def test_streamed_body_above_the_limit(esm: Esm, small_esm: str) -> None:
    """Chunked bodies declare no length: the server counts what arrives and stops at the limit."""
    agent = esm.enroll()
    before = esm.snapshot()
    batch = {"events": [new_event(cmdline="x" * 8000) for _ in range(20)]}  # ~170 KB
    payload = json.dumps(batch).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    parts = urlsplit(small_esm)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    headers = dict(esm.agent_header(agent), **{"Content-Type": "application/json"})
    try:
        conn.request("POST", routes.AGENT_EVENTS, chunks(), headers, encode_chunked=True)
        response = conn.getresponse()
        status, body = response.status, response.read()
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("the server closed the connection without a 413")
    finally:
        conn.close()
    assert status == 413, body
    assert b"request body larger than 65536 bytes" in body
    assert esm.snapshot() == before


def test_unexpected_errors_are_one_line_500s(esm: Esm, monkeypatch: pytest.MonkeyPatch) -> None:
    from esmd.services import ingest

    agent_headers = esm.agent_header(esm.enroll())

    def explode(*_args: Any) -> None:
        raise RuntimeError("secret internals\nline two")

    monkeypatch.setattr(ingest, "ingest", explode)
    reply = esm.raw("POST", routes.AGENT_EVENTS, {"events": [new_event()]}, agent_headers)
    assert reply.status == 500
    assert reply.json == {"detail": "internal server error (logged by the server)"}


def test_a_locked_database_is_a_503_with_retry_after(
    esm: Esm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from esmd.services import ingest

    agent_headers = esm.agent_header(esm.enroll())

    def locked(*_args: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(ingest, "ingest", locked)
    reply = esm.raw("POST", routes.AGENT_EVENTS, {"events": [new_event()]}, agent_headers)
    assert reply.status == 503 and reply.headers["retry-after"] == "1"
    assert reply.detail == "database busy or unavailable; retry later"

"""The stdlib transport against a real local HTTP server: status mapping and failover."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trapsapi.errors import (
    ApiError,
    AuthError,
    Conflict,
    ExitCode,
    NotFound,
    RateLimited,
    Unreachable,
    UsageError,
)
from trapsapi.http import Connection, ServerPool, parse_server_url


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"null")
        status = int(self.path.strip("/").split("?")[0] or 200)
        reply = {"echo": body, "auth": self.headers.get("Authorization")}
        if status >= 400:
            reply = {"detail": f"failed with {status}"}
        data = json.dumps(reply).encode()
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", "7")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_json_round_trip_and_keepalive(server_url: str) -> None:
    connection = Connection(server_url)
    for n in range(3):
        reply = connection.request("POST", "/200", {"n": n}, {"Authorization": "Bearer x"})
        assert reply == {"echo": {"n": n}, "auth": "Bearer x"}
    connection.close()


class HoldingHandler(Handler):
    """HTTP/1.1 keep-alive; ``/hold`` answers only after 10 s (a long-poll)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        if self.path == "/hold":
            time.sleep(10)
            self.path = "/200"
        super().do_POST()


def test_abort_ends_a_held_request_on_a_kept_alive_connection_without_retrying() -> None:
    """A shut-down socket looks like a dropped keep-alive; the retry must not hold again."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), HoldingHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    connection = Connection(f"http://127.0.0.1:{server.server_address[1]}", timeout=30)
    try:
        assert connection.request("POST", "/200", {"n": 1})["echo"] == {"n": 1}
        threading.Timer(0.3, connection.abort).start()
        started = time.monotonic()
        with pytest.raises(Unreachable):
            connection.request("POST", "/hold", {})
        assert time.monotonic() - started < 3
        with pytest.raises(Unreachable, match="aborted"):
            connection.request("POST", "/200", {})
    finally:
        connection.close()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (401, AuthError, ExitCode.AUTH),
        (403, AuthError, ExitCode.AUTH),
        (404, NotFound, ExitCode.NOT_FOUND),
        (409, Conflict, ExitCode.ERROR),
        (422, ApiError, ExitCode.ERROR),
        (500, ApiError, ExitCode.ERROR),
    ],
)
def test_error_statuses_map_to_errors_with_exit_codes(
    server_url: str, status: int, error: type[ApiError], code: ExitCode
) -> None:
    with pytest.raises(error) as info:
        Connection(server_url).request("POST", f"/{status}", {})
    assert info.value.exit_code == code
    assert info.value.status == status
    assert str(info.value) == f"failed with {status}"


def test_retry_after_is_read(server_url: str) -> None:
    with pytest.raises(RateLimited) as info:
        Connection(server_url).request("POST", "/429", {})
    assert info.value.retry_after == 7


def test_unreachable_server_is_exit_code_3() -> None:
    with pytest.raises(Unreachable, match="connection refused") as info:
        Connection(_closed_port_url(), timeout=2).request("POST", "/200", {})
    assert info.value.exit_code == ExitCode.UNREACHABLE


def test_pool_fails_over_and_stays_on_the_server_that_answered(server_url: str) -> None:
    pool = ServerPool([_closed_port_url(), server_url], timeout=2)
    assert pool.request("POST", "/200", {"a": 1})["echo"] == {"a": 1}
    assert pool.current_url == server_url
    pool.close()


def test_pool_with_no_live_server_names_every_failure() -> None:
    urls = [_closed_port_url(), _closed_port_url()]
    with pytest.raises(Unreachable, match="no ESM server reachable") as info:
        ServerPool(urls, timeout=2).request("POST", "/200", {})
    assert str(info.value).count("connection refused") == 2


@pytest.mark.parametrize("url", ["ftp://x", "localhost:2125", "http://", "http://h:99999"])
def test_bad_server_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError):
        parse_server_url(url)

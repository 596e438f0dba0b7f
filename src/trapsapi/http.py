"""A small keep-alive JSON-over-HTTP(S) transport built on :mod:`http.client`.

Why not httpx: importing httpx pulls in click and rich when they are installed (+6 MB RSS,
~100 more modules), which the agent's 30 MB budget and the console's start-up time cannot
afford. One connection per base URL is kept open and reused; a server list gives failover.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

from trapsapi.errors import Unreachable, UsageError, error_for_status

JSON = Any
USER_AGENT = "traps/0.1"


def parse_server_url(url: str) -> tuple[str, str, int, str]:
    """Split ``https://host:port/prefix`` into (scheme, host, port, path prefix); reject junk."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid server URL {url!r}: expected http(s)://host[:port]")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"invalid server URL {url!r}: bad port") from None
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


_HEX = re.compile(r"^[0-9a-f]{64}$")


class PinMismatch(ssl.SSLError):
    """The server's certificate is not the one pinned at enrollment."""


def normalise_pin(text: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lowercase hex digits (colons and an optional
    ``sha256:``/``SHA256 Fingerprint=`` prefix, as openssl prints it, are accepted)."""
    value = text.strip().lower()
    for prefix in ("sha256 fingerprint=", "sha256:", "sha256="):
        value = value.removeprefix(prefix)
    value = value.replace(":", "").strip()
    if not _HEX.match(value):
        raise UsageError(f"invalid SHA-256 fingerprint {text!r}: expected 64 hex digits")
    return value


def certificate_sha256(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS that also requires the server certificate's SHA-256 to equal a pinned one."""

    def __init__(self, host: str, port: int, *, pin: str, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._pin = pin

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True) or b""
        seen = certificate_sha256(der)
        if seen != self._pin:
            self.close()
            raise PinMismatch(
                f"the server certificate (sha256 {seen}) is not the one pinned at "
                f"enrollment (sha256 {self._pin})"
            )


def tls_context(ca_file: str | None, pin_sha256: str | None) -> ssl.SSLContext:
    """Verify against ``ca_file`` (else the system CAs); with a pin, the pin alone decides,
    so a self-signed server certificate can be pinned without a CA."""
    if pin_sha256:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        if ca_file:
            context.load_verify_locations(cafile=ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    else:
        context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Connection:
    """One keep-alive connection to one server; thread-safe by a lock (requests serialise)."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        ca_file: str | None = None,
        pin_sha256: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.scheme, self.host, self.port, self.prefix = parse_server_url(url)
        self.timeout = timeout
        self.ca_file = ca_file
        self.pin_sha256 = normalise_pin(pin_sha256) if pin_sha256 else None
        self._context: ssl.SSLContext | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._aborted = False

    def _connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            if self._context is None:
                try:
                    self._context = tls_context(self.ca_file, self.pin_sha256)
                except (OSError, ssl.SSLError) as exc:
                    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                    raise UsageError(f"CA file {self.ca_file}: cannot load it ({reason})") from None
            if self.pin_sha256:
                return _PinnedHTTPSConnection(
                    self.host,
                    self.port,
                    pin=self.pin_sha256,
                    timeout=self.timeout,
                    context=self._context,
                )
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=self._context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def abort(self) -> None:
        """From another thread: end a request blocked on this connection (a long-poll) now,
        and refuse any later one (it is used to stop).

        Takes no lock (the blocked request holds it); shutting the socket down is safe."""
        self._aborted = True
        conn = self._conn
        sock = getattr(conn, "sock", None) if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def request(
        self,
        method: str,
        path: str,
        body: JSON = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> JSON:
        """Send one request and return the decoded JSON body; raise the mapped error otherwise."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        target = self.prefix + path + (f"?{urlencode(query, doseq=True)}" if query else "")
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        send_headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if payload is not None:
            send_headers["Content-Type"] = "application/json"
        send_headers.update(headers or {})
        with self._lock:
            status, reason, raw, retry_after = self._send(method, target, payload, send_headers)
        data: JSON = None
        if raw:
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
        if status >= 400:
            message = _detail(raw) or f"{status} {reason}"
            raise error_for_status(status, message, retry_after)
        return data

    def download(
        self,
        path: str,
        write: Callable[[bytes], object],
        headers: Mapping[str, str] | None = None,
        chunk_bytes: int = 64 * 1024,
    ) -> dict[str, str]:
        """GET a file and hand its body to ``write`` chunk by chunk (never all in memory);
        the response headers (lower-case names). Errors are raised as by :meth:`request`."""
        send_headers = {"Accept": "*/*", "User-Agent": USER_AGENT, **(headers or {})}
        with self._lock:
            response = self._open("GET", self.prefix + path, None, send_headers)
            finished = False
            try:
                if response.status >= 400:
                    raw = self._read(response)
                    detail = _detail(raw) or f"{response.status} {response.reason}"
                    finished = True
                    raise error_for_status(response.status, detail, None)
                while chunk := self._read(response, chunk_bytes):
                    write(chunk)  # the caller's errors (a full disk) are its own
                finished = True
            finally:
                if not finished:  # the rest of the body is unread: the connection is unusable
                    self.close_unlocked()
            self._finish(response)
            return {k.lower(): v for k, v in response.getheaders()}

    def _read(self, response: http.client.HTTPResponse, size: int = -1) -> bytes:
        try:
            return response.read(size) if size > 0 else response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close_unlocked()
            raise Unreachable(f"{self.url}: {_describe(exc)}") from None

    def close_unlocked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _finish(self, response: http.client.HTTPResponse) -> None:
        if response.getheader("Connection", "").lower() == "close":
            self.close_unlocked()

    def _open(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> http.client.HTTPResponse:
        # A kept-alive connection may have been closed by the server: retry once on a fresh one.
        for attempt in (1, 2):
            if self._aborted:  # never retry (and block again) on a connection being stopped
                self.close_unlocked()
                raise Unreachable(f"{self.url}: aborted")
            fresh = self._conn is None
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.request(method, target, body=payload, headers=headers)
                return self._conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close_unlocked()
                if fresh or attempt == 2:
                    raise Unreachable(f"{self.url}: connection lost ({exc})") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close_unlocked()
                raise Unreachable(f"{self.url}: {_describe(exc)}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self, method: str, target: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str, bytes, float | None]:
        response = self._open(method, target, payload, headers)
        raw = self._read(response)
        self._finish(response)
        retry = response.getheader("Retry-After")
        retry_after = float(retry) if retry and retry.replace(".", "", 1).isdigit() else None
        return response.status, response.reason, raw, retry_after


def _detail(raw: bytes) -> str | None:
    """The one-line ``detail`` of an error body, if it is one."""
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    detail = data.get("detail") if isinstance(data, dict) else None
    return str(detail) if detail else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, PinMismatch):
        return f"TLS refused: {exc.args[0]}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS refused: the server certificate does not verify ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return f"TLS error: {exc}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host ({exc.strerror})"
    return str(exc) or type(exc).__name__


class ServerPool:
    """An ordered list of servers: requests go to the current one and fail over on Unreachable.

    The last server that answered stays current, so a healthy server is not abandoned for
    the first one of the list on every request.
    """

    def __init__(
        self,
        urls: Sequence[str],
        timeout: float = 10.0,
        ca_file: str | None = None,
        pin_sha256: str | None = None,
    ) -> None:
        if not urls:
            raise UsageError("no server URL given")
        self.connections = [Connection(u, timeout, ca_file, pin_sha256) for u in urls]
        self.current = 0

    @property
    def current_url(self) -> str:
        return self.connections[self.current].url

    def request(
        self,
        method: str,
        path: str,
        body: JSON = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> JSON:
        errors: list[str] = []
        count = len(self.connections)
        for offset in range(count):
            index = (self.current + offset) % count
            try:
                result = self.connections[index].request(method, path, body, headers, params)
            except Unreachable as exc:
                errors.append(exc.message)
                continue
            self.current = index
            return result
        raise Unreachable("no ESM server reachable: " + "; ".join(errors))

    def abort(self) -> None:
        for connection in self.connections:
            connection.abort()

    def close(self) -> None:
        for connection in self.connections:
            connection.close()

"""Transports of the exporter: UDP datagrams, TCP and TLS streams, and a rotated file.

``send`` delivers a whole batch or raises :class:`SinkError`; the exporter advances its
cursor only after ``send`` returned, so a failure re-sends the batch (at-least-once).
Stream connections stay open between batches and are re-opened after any error.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path

from esmd.export.config import ExportSink
from esmd.export.formats import ExportRow, as_json, cef, frame, syslog

MAX_UDP_PAYLOAD = 65000


class SinkError(Exception):
    """A batch could not be delivered (one line: the sink and the reason)."""


def render(sink: ExportSink, row: ExportRow) -> bytes:
    """One record of ``row`` for ``sink``, framed for its transport."""
    message = cef(row) if sink.format == "cef" else as_json(row)
    line = syslog(message, row, sink.effective_header, facility=sink.facility, sender=row.hostname)
    return frame(line.encode("utf-8"), sink.effective_framing)


def tls_context(sink: ExportSink) -> ssl.SSLContext:
    """Verifying client context: the sink's CA file, else the system's CAs."""
    try:
        context = ssl.create_default_context(
            cafile=str(sink.ca_file) if sink.ca_file is not None else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise SinkError(f"sink {sink.name}: cannot load ca_file {sink.ca_file}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class Sink:
    """One configured destination; not thread-safe (each sink has one exporter thread)."""

    def __init__(self, config: ExportSink) -> None:
        self.config = config
        self._sock: socket.socket | None = None
        self._context: ssl.SSLContext | None = None

    def send(self, rows: Sequence[ExportRow]) -> None:
        records = [render(self.config, row) for row in rows]
        if not records:
            return
        try:
            if self.config.transport == "file":
                self._append(records)
            elif self.config.transport == "udp":
                self._datagrams(records)
            else:
                self._stream(b"".join(records))
        except (OSError, ssl.SSLError) as exc:
            self.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SinkError(f"sink {self.config.name}: {reason or type(exc).__name__}") from None

    def _datagrams(self, records: list[bytes]) -> None:
        if self._sock is None:
            host, port = self.config.host or "", self.config.port or 0
            family, kind, proto, _, address = socket.getaddrinfo(
                host, port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.settimeout(self.config.timeout_s)
            sock.connect(address)
            self._sock = sock
        for record in records:
            self._sock.send(record[:MAX_UDP_PAYLOAD])

    def _stream(self, payload: bytes) -> None:
        if self._sock is not None and _peer_closed(self._sock, self.config.timeout_s):
            self.close()  # else the batch would vanish into the buffer of a dead connection
        if self._sock is None:
            host, port = self.config.host or "", self.config.port or 0
            sock = socket.create_connection((host, port), timeout=self.config.timeout_s)
            if self.config.transport == "tls":
                if self._context is None:
                    self._context = tls_context(self.config)
                try:
                    sock = self._context.wrap_socket(
                        sock, server_hostname=self.config.server_name or host
                    )
                except BaseException:
                    sock.close()
                    raise
            self._sock = sock
        self._sock.sendall(payload)

    def _append(self, records: list[bytes]) -> None:
        """Append, rotating before a record would take the file past ``max_bytes``."""
        path = self.config.path
        assert path is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            size = os.fstat(fd).st_size
            for record in records:
                if size and size + len(record) > self.config.max_bytes:
                    os.fsync(fd)
                    os.close(fd)
                    fd = -1
                    rotate(path, self.config.backups)
                    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                    size = 0
                view = memoryview(record)
                while view:
                    view = view[os.write(fd, view) :]
                size += len(record)
            os.fsync(fd)
        finally:
            if fd >= 0:
                os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _peer_closed(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the receiver closed the stream (syslog receivers never send application data,
    so readability means EOF, an error, or TLS housekeeping such as session tickets)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    sock.setblocking(False)
    try:
        return sock.recv(4096) == b""
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(timeout_s)


def rotate(path: Path, backups: int) -> None:
    """``file`` -> ``file.1`` -> ... -> ``file.N`` (the oldest dropped); 0 backups truncates."""
    if backups == 0:
        path.unlink(missing_ok=True)
        return
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))

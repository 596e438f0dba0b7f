"""Real loopback syslog receivers for the export tests: UDP datagrams, TCP and TLS streams
(RFC 5425 octet counting or LF framing), collecting the messages they parse."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path


def parse_octet_counted(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete ``LEN SP MSG`` frames of ``buffer`` and the unparsed rest."""
    messages = []
    while True:
        space = buffer.find(b" ")
        if space <= 0:
            return messages, buffer
        length = int(buffer[:space])
        end = space + 1 + length
        if len(buffer) < end:
            return messages, buffer
        messages.append(buffer[space + 1 : end])
        buffer = buffer[end:]


class Receiver:
    """One listener thread; ``messages`` grows as frames arrive; ``stop`` closes everything."""

    def __init__(
        self,
        transport: str,
        port: int = 0,
        framing: str = "octet",
        cert: Path | None = None,
        key: Path | None = None,
    ) -> None:
        self.transport = transport
        self.framing = framing
        self.messages: list[bytes] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._context: ssl.SSLContext | None = None
        if transport == "tls":
            assert cert is not None and key is not None
            self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._context.load_cert_chain(str(cert), str(key))
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        if transport != "udp":
            self.sock.listen(8)
        self._clients: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._serve, daemon=True)]
        self._threads[0].start()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                if self.transport == "udp":
                    data = self.sock.recv(70000)
                    with self._lock:
                        self.messages.append(data)
                    continue
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=self._read, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _read(self, client: socket.socket) -> None:
        try:
            if self._context is not None:
                client.settimeout(5)
                client = self._context.wrap_socket(client, server_side=True)
            client.settimeout(0.2)
        except (OSError, ssl.SSLError):
            client.close()
            return
        self._clients.append(client)
        buffer = b""
        while not self._stopping:
            try:
                chunk = client.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                break
            if not chunk:
                break
            buffer += chunk
            if self.framing == "octet":
                messages, buffer = parse_octet_counted(buffer)
            else:
                *messages, buffer = buffer.split(b"\n")
            with self._lock:
                self.messages.extend(messages)
        client.close()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        with self._lock:
            raise AssertionError(f"expected {count} messages, got {len(self.messages)}")

    def stop(self) -> None:
        self._stopping = True
        self.sock.close()
        for client in self._clients:
            try:
                client.shutdown(socket.SHUT_RDWR)  # a FIN now, not after the reader's recv
            except OSError:
                pass
        for thread in self._threads:
            thread.join(2)

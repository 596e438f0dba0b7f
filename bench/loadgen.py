"""A small HTTP/1.1 keep-alive load generator (asyncio, raw sockets): no wrk needed.

Each connection sends its requests one after another (no pipelining), cycling through a list
of prebuilt requests. Both the bare endpoint and esmd are measured with this same generator,
so the ratio between them is fair even where the generator itself costs CPU.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank; 0 for none): every bench's one."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def install_uvloop() -> None:
    """uvloop's event loop for the load generators, as the server runs (when installed)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a server dependency
        pass


def build_request(
    host: str, port: int, method: str, path: str, body: object | None, headers: dict[str, str]
) -> bytes:
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _worker(
    host: str, port: int, requests: list[bytes], offset: int, deadline: float, result: Result
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    index = offset
    try:
        while time.monotonic() < deadline:
            request = requests[index % len(requests)]
            index += 1
            sent = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            result.latencies_ms.append((time.perf_counter() - sent) * 1000)
            if status >= 400:
                result.errors += 1
            result.requests += 1
    finally:
        writer.close()


async def _run(
    host: str, port: int, requests: list[bytes], connections: int, seconds: float
) -> Result:
    result = Result()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(_worker(host, port, requests, i, deadline, result) for i in range(connections))
    )
    result.seconds = time.monotonic() - started
    return result


def run_load(
    host: str, port: int, requests: list[bytes], connections: int = 32, seconds: float = 8.0
) -> Result:
    install_uvloop()
    return asyncio.run(_run(host, port, requests, connections, seconds))

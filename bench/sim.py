"""A fleet simulator: many lightweight agents in one process speaking the real agent protocol.

Each simulated agent enrolls once (credentials are kept in a JSON file so a later run resumes
without enrolling again), then checks in every ``--interval`` seconds with a random phase
(jitter), on a fresh connection each time as a real agent with a 60-minute heartbeat would,
and uploads a small batch of events at ``--events-per-s`` across the whole fleet. It reports
check-in latency percentiles and errors; run it against any esmd:

    python bench/sim.py --server http://127.0.0.1:2125 --token TOKEN --agents 20000 --duration 120
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import build_request
from payloads import checkin_body, event

from trapsapi import routes


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    events: int = 0
    minutes: list[int] = field(default_factory=list)
    """The minute of the run each latency was measured in (the first check-ins of a fleet
    cost more than its steady state: a reply from memory needs two check-ins before)."""
    started: float = field(default_factory=time.monotonic)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def record(self, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        self.minutes.append(int((time.monotonic() - self.started) // 60))

    def percentile(self, q: float, minute: int | None = None) -> float:
        latencies = self.latencies_ms
        if minute is not None:
            latencies = [v for v, m in zip(latencies, self.minutes, strict=True) if m == minute]
        if not latencies:
            return 0.0
        ordered = sorted(latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def by_minute(self) -> list[dict[str, float]]:
        return [
            {
                "minute": minute,
                "checkins": self.minutes.count(minute),
                "p50_ms": round(self.percentile(0.50, minute), 1),
                "p99_ms": round(self.percentile(0.99, minute), 1),
            }
            for minute in sorted(set(self.minutes))
        ]


async def call(host: str, port: int, request: bytes) -> tuple[int, bytes]:
    """One request on a fresh connection; returns (status, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length) if length else b""
        return int(head[9:12]), body
    finally:
        writer.close()


async def enroll_fleet(
    host: str, port: int, token: str, count: int, store: Path
) -> list[tuple[str, str]]:
    """Enroll ``count`` agents (or reuse those stored by an earlier run)."""
    known: list[tuple[str, str]] = []
    if store.exists():
        known = [tuple(pair) for pair in json.loads(store.read_text())]  # type: ignore[misc]
    gate = asyncio.Semaphore(16)

    async def one(n: int) -> tuple[str, str]:
        body = {
            "token": token,
            "hostname": f"sim-{n:06d}",
            "os": "linux",
            "os_version": "sim",
            "agent_version": "0.1.0",
        }
        async with gate:
            status, raw = await call(
                host, port, build_request(host, port, "POST", routes.AGENT_ENROLL, body, {})
            )
        if status != 201:
            raise SystemExit(f"enroll failed with {status}: {raw[:200]!r}")
        reply = json.loads(raw)
        return reply["agent_id"], reply["agent_secret"]

    known += await asyncio.gather(*(one(n) for n in range(len(known), count)))
    store.write_text(json.dumps(known))
    return known[:count]


def bulk_enroll(database_url: str, count: int, store: Path) -> list[tuple[str, str]]:
    """Write ``count`` agents straight into the database (a 100,000-agent fleet would take
    minutes through the enrollment route, which is not what is measured)."""
    import secrets
    import uuid

    from sqlalchemy import create_engine

    from esmd.db.tables import AGENTS
    from esmd.security import token_hash
    from esmd.timeutil import utcnow

    known: list[tuple[str, str]] = []
    if store.exists():
        known = [tuple(pair) for pair in json.loads(store.read_text())]  # type: ignore[misc]
    engine = create_engine(database_url)
    now = utcnow()
    fresh = [(str(uuid.uuid4()), secrets.token_urlsafe(24)) for _ in range(count - len(known))]
    with engine.begin() as connection:
        for start in range(0, len(fresh), 5000):
            rows = [
                {
                    "agent_id": agent_id,
                    "secret_hash": token_hash(secret),
                    "hostname": f"sim-{len(known) + start + n:06d}",
                    "os": "linux",
                    "os_version": "sim",
                    "agent_version": "0.1.0",
                    "ips": [],
                    "enrolled_at": now,
                    "modules": [],
                    "outbox_depth": 0,
                    "events_dropped": 0,
                    "issues": [],
                }
                for n, (agent_id, secret) in enumerate(fresh[start : start + 5000])
            ]
            connection.execute(AGENTS.insert(), rows)
    engine.dispose()
    known += fresh
    store.write_text(json.dumps(known))
    return known[:count]


async def agent_loop(
    host: str,
    port: int,
    n: int,
    credential: tuple[str, str],
    interval: float,
    deadline: float,
    stats: Stats,
) -> None:
    auth = {"Authorization": f"Bearer {credential[0]}.{credential[1]}"}
    request = build_request(host, port, "POST", routes.AGENT_CHECKIN, checkin_body(n), auth)
    await asyncio.sleep(random.uniform(0, interval))  # jitter: spread the fleet over the interval
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            status, _ = await call(host, port, request)
        except OSError as exc:
            stats.error(type(exc).__name__)
        else:
            stats.record((time.perf_counter() - started) * 1000)
            if status != 200:
                stats.error(f"http {status}")
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def event_loop(
    host: str,
    port: int,
    fleet: list[tuple[str, str]],
    per_second: float,
    deadline: float,
    stats: Stats,
) -> None:
    """Fleet-wide events, 10 per batch from a random agent."""
    if per_second <= 0:
        return
    while time.monotonic() < deadline:
        agent_id, secret = random.choice(fleet)
        auth = {"Authorization": f"Bearer {agent_id}.{secret}"}
        body = {"events": [event(i) for i in range(10)]}
        try:
            status, _ = await call(
                host, port, build_request(host, port, "POST", routes.AGENT_EVENTS, body, auth)
            )
            if status == 200:
                stats.events += 10
            else:
                stats.error(f"events http {status}")
        except OSError as exc:
            stats.error(type(exc).__name__)
        await asyncio.sleep(10 / per_second)


async def _simulate(
    server: str | list[str],
    token: str,
    agents: int,
    interval: float,
    duration: float,
    events_per_s: float,
    store: Path,
    database_url: str | None = None,
) -> Stats:
    servers = [server] if isinstance(server, str) else server
    hosts = [(urlsplit(s).hostname or "127.0.0.1", urlsplit(s).port or 2125) for s in servers]
    host, port = hosts[0]
    if database_url:
        fleet = bulk_enroll(database_url, agents, store)
    else:
        fleet = await enroll_fleet(host, port, token, agents, store)
    stats = Stats()
    deadline = stats.started + duration
    await asyncio.gather(
        event_loop(host, port, fleet, events_per_s, deadline, stats),
        *(
            agent_loop(*hosts[n % len(hosts)], n, credential, interval, deadline, stats)
            for n, credential in enumerate(fleet)
        ),
    )
    return stats


def simulate(
    server: str | list[str],
    token: str,
    agents: int,
    interval: float = 60.0,
    duration: float = 120.0,
    events_per_s: float = 0.0,
    store: Path = Path("sim-agents.json"),
    database_url: str | None = None,
) -> dict[str, object]:
    """Run the simulated fleet and return its figures (latencies of check-ins, errors);
    with several servers the agents are spread over them; with ``database_url`` they are
    written into the database instead of enrolled."""
    stats = asyncio.run(
        _simulate(server, token, agents, interval, duration, events_per_s, store, database_url)
    )
    return {
        "agents": agents,
        "interval_s": interval,
        "checkins": len(stats.latencies_ms),
        "checkins_per_s": round(len(stats.latencies_ms) / duration, 1),
        "p50_ms": round(stats.percentile(0.50), 1),
        "p95_ms": round(stats.percentile(0.95), 1),
        "p99_ms": round(stats.percentile(0.99), 1),
        "by_minute": stats.by_minute(),
        "events": stats.events,
        "simulator_cpu_s": round(time.process_time(), 1),
        "errors": stats.errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="append", required=True, help="repeat for more")
    parser.add_argument("--database-url", help="write the agents into it instead of enrolling")
    parser.add_argument("--token", required=True, help="an enrollment token with enough uses")
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=60.0, help="check-in interval, s")
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--events-per-s", type=float, default=0.0)
    parser.add_argument("--store", default="sim-agents.json", help="credentials file (resume)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    result = simulate(
        args.server,
        args.token,
        args.agents,
        args.interval,
        args.duration,
        args.events_per_s,
        Path(args.store),
        args.database_url,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A fleet simulator: many lightweight agents in one process speaking the real agent protocol.

Each simulated agent enrolls once (credentials are kept in a JSON file so a later run resumes
without enrolling again), then checks in every ``--interval`` seconds with a random phase
(jitter), on a fresh connection each time as a real agent with a 60-minute heartbeat would,
and uploads a small batch of events at ``--events-per-s`` across the whole fleet. It reports
check-in latency percentiles and errors; run it against any esmd:

    python bench/sim.py --server http://127.0.0.1:2125 --token TOKEN --agents 20000 --duration 120

A real fleet connects from many addresses: ``--sources N`` spreads the agents over the source
addresses 127.0.0.1 … 127.0.0.N (loopback), so that one address's ephemeral ports are not the
limit; ``--processes N`` splits the fleet over N simulator processes (one event loop each) and
merges their figures. Every check-in is counted, its connect time too (a SYN the server's
listen queue dropped shows as a connect of 1 s or 3 s), and the simulator's own event-loop lag
is reported per minute, so that a slow simulator is not mistaken for a slow server.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import multiprocessing
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import build_request, install_uvloop
from payloads import checkin_body, event
from sim_stats import Stats

from trapsapi import routes

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
"""Bind to a source address but choose the port at connect() time, by the whole 4-tuple."""


async def connect(
    host: str, port: int, source: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A fresh connection, from the source address ``source`` if given."""
    if source is None:
        return await asyncio.open_connection(host, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request, read its reply, close the connection; returns (status, body)."""
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


async def call(
    host: str, port: int, request: bytes, source: str | None = None
) -> tuple[int, bytes]:
    """One request on a fresh connection; returns (status, body)."""
    return await exchange(*await connect(host, port, source), request)


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


async def fleet_loop(
    agents: list[tuple[str, int, bytes, str | None]],
    interval: float,
    deadline: float,
    stats: Stats,
) -> None:
    """Each agent (host, port, request, source) checks in every ``interval`` seconds, the first
    time at a random moment of the first interval (jitter), on a fresh connection each time.

    One scheduler (a heap of due times) starts each check-in as a short task. A sleeping task
    per agent, as before, kept 100,000 tasks, coroutines and timer futures alive in one
    process; Python's full collections over them stalled this event loop for 0.5-0.9 s each
    (measured), and the check-ins held up meanwhile then reached the servers as one burst:
    pauses and bursts that a fleet of separate machines does not have."""
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, stats.started - time.monotonic()))
    start = time.monotonic()
    due = [(start + random.uniform(0, interval), k) for k in range(len(agents))]
    heapq.heapify(due)
    running: set[asyncio.Task[None]] = set()

    async def checkin(k: int) -> None:
        host, port, request, source = agents[k]
        started = time.perf_counter()
        try:
            reader, writer = await connect(host, port, source)
            connected = time.perf_counter()
            status, _ = await exchange(reader, writer, request)
        except OSError as exc:
            stats.error(type(exc).__name__)
        else:
            done = time.perf_counter()
            stats.record((done - started) * 1000, (connected - started) * 1000)
            if status != 200:
                stats.error(f"http {status}")
        if time.monotonic() + interval < deadline:
            heapq.heappush(due, (time.monotonic() + interval, k))

    while (now := time.monotonic()) < deadline:
        while due and due[0][0] <= now:
            task = loop.create_task(checkin(heapq.heappop(due)[1]))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.sleep(min(0.05, deadline - now, due[0][0] - now if due else 0.05))
    if running:
        await asyncio.gather(*running)


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


async def watch_lag(deadline: float, stats: Stats, period: float = 0.05) -> None:
    """How late the simulator's own event loop wakes up (its lag adds to every latency)."""
    await asyncio.sleep(max(0.0, stats.started - time.monotonic()))
    while time.monotonic() < deadline:
        asleep = time.monotonic()
        await asyncio.sleep(period)
        stats.lag_ms.append(max(0.0, time.monotonic() - asleep - period) * 1000)
        stats.lag_minutes.append(stats.minute())


def source_addresses(count: int) -> list[str | None]:
    """``count`` loopback source addresses (127.0.0.1 …); one means the kernel's choice."""
    if count <= 1:
        return [None]
    if count > 254:
        raise SystemExit("at most 254 source addresses (127.0.0.1-254)")
    return [f"127.0.0.{k}" for k in range(1, count + 1)]


async def _run_shard(
    hosts: list[tuple[str, int]],
    fleet: list[tuple[str, str]],
    shard: int,
    shards: int,
    interval: float,
    started: float,
    duration: float,
    events_per_s: float,
    sources: int,
) -> Stats:
    """Agents ``shard``, ``shard + shards``, … of the fleet (events from the first shard)."""
    stats = Stats(started=started)
    deadline = started + duration
    addresses = source_addresses(sources)
    agents = []
    for n in range(shard, len(fleet), shards):
        host, port = hosts[n % len(hosts)]
        auth = {"Authorization": f"Bearer {fleet[n][0]}.{fleet[n][1]}"}
        request = build_request(host, port, "POST", routes.AGENT_CHECKIN, checkin_body(n), auth)
        agents.append((host, port, request, addresses[n % len(addresses)]))
    await asyncio.gather(
        watch_lag(deadline, stats),
        event_loop(*hosts[0], fleet, events_per_s if shard == 0 else 0.0, deadline, stats),
        fleet_loop(agents, interval, deadline, stats),
    )
    return stats


def _shard_process(arguments: tuple[Any, ...]) -> Stats:
    """One simulator process: its own event loop over its share of the fleet."""
    install_uvloop()
    stats = asyncio.run(_run_shard(*arguments))
    stats.cpu_s = [time.process_time()]
    return stats


async def _fleet(
    hosts: list[tuple[str, int]], token: str, agents: int, store: Path, database_url: str | None
) -> list[tuple[str, str]]:
    if database_url:
        return bulk_enroll(database_url, agents, store)
    return await enroll_fleet(*hosts[0], token, agents, store)


def simulate(
    server: str | list[str],
    token: str,
    agents: int,
    interval: float = 60.0,
    duration: float = 120.0,
    events_per_s: float = 0.0,
    store: Path = Path("sim-agents.json"),
    database_url: str | None = None,
    processes: int = 1,
    sources: int = 1,
) -> dict[str, object]:
    """Run the simulated fleet and return its figures (latencies of check-ins, errors);
    with several servers the agents are spread over them; with ``database_url`` they are
    written into the database instead of enrolled; ``processes`` and ``sources``: above."""
    servers = [server] if isinstance(server, str) else server
    hosts = [(urlsplit(s).hostname or "127.0.0.1", urlsplit(s).port or 2125) for s in servers]
    fleet = asyncio.run(_fleet(hosts, token, agents, store, database_url))
    if processes <= 1:
        stats = asyncio.run(
            _run_shard(
                hosts, fleet, 0, 1, interval, time.monotonic(), duration, events_per_s, sources
            )
        )
        stats.cpu_s = [time.process_time()]
    else:
        started = time.monotonic() + 2.0  # every process starts its clock at the same moment
        shards = [
            (hosts, fleet, k, processes, interval, started, duration, events_per_s, sources)
            for k in range(processes)
        ]
        with multiprocessing.get_context("fork").Pool(processes) as pool:
            parts = pool.map(_shard_process, shards)
        stats = parts[0]
        for part in parts[1:]:
            stats.merge(part)
    return {
        "agents": agents,
        "interval_s": interval,
        "processes": processes,
        "sources": sources,
        "checkins": len(stats.latencies_ms),
        "checkins_per_s": round(len(stats.latencies_ms) / duration, 1),
        "p50_ms": round(stats.percentile(0.50), 1),
        "p95_ms": round(stats.percentile(0.95), 1),
        "p99_ms": round(stats.percentile(0.99), 1),
        "by_minute": stats.by_minute(),
        "events": stats.events,
        "simulator_cpu_s": round(sum(stats.cpu_s), 1),
        "simulator_cpu_s_each": [round(v, 1) for v in stats.cpu_s],
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
    parser.add_argument("--processes", type=int, default=1, help="simulator processes")
    parser.add_argument("--sources", type=int, default=1, help="source addresses 127.0.0.1-N")
    args = parser.parse_args()
    install_uvloop()
    result = simulate(
        args.server,
        args.token,
        args.agents,
        args.interval,
        args.duration,
        args.events_per_s,
        Path(args.store),
        args.database_url,
        args.processes,
        args.sources,
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wake-channel delivery with a simulated fleet holding long-polls (one keep-alive socket each).

Every agent keeps ``GET /agent/wait?deliver=true`` open on one of the servers (round robin),
as ``trapsd`` does: the reply carries the news itself (the new policy, its pending actions),
and the agent polls again at once; an agent that got a new policy confirms it by a check-in
at a random moment within the server's ``report_within_s``. Delivery = from just before the
admin's request until the reply carrying the news reached the simulated agent. Three
measurements, all through the admin API of the first server:

* an action for one agent (sampled one after another);
* an action for every agent (a query target): one broadcast;
* a policy change (a verdict set): every agent gets its new policy.

The simulator is one process for the whole fleet: once every poll is held, its objects are
frozen out of garbage collection and automatic collection is off while it measures (its own
full collections, up to 0.2 s each, stopped every simulated agent at once and were counted
as delivery time); ``simulator_gc_pauses_s`` reports what was left.

    python bench/wake_sim.py --server URL [--server URL2] --token TOKEN --admin-token T
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import build_request, install_uvloop, percentile
from payloads import checkin_body
from sim import bulk_enroll, call, enroll_fleet

from trapsapi import routes

HOLD_S = 55


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it); returns the new soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes so far (0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class Pauses:
    """The simulator's own garbage-collection pauses (it is one process for the whole fleet:
    its pauses would be charged to the server's delivery)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        self.total += pause
        self.longest = max(self.longest, pause)

    def close(self) -> None:
        gc.callbacks.remove(self._callback)


class KeepAlive:
    """One agent's connection, reused request after request (reopened after an error)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        try:
            self.writer.write(raw)
            head = await self.reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await self.reader.readexactly(length) if length else b""
            return int(head[9:12]), body
        except (OSError, asyncio.IncompleteReadError):
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Fleet:
    def __init__(self, servers: list[tuple[str, int]], credentials: list[tuple[str, str]]) -> None:
        self.servers = servers
        self.credentials = credentials
        self.version = 0
        self.errors: dict[str, int] = {}
        self.arrivals: list[tuple[str, float]] = []  # (action id or "policy:V", when)
        self.confirms = 0
        self.confirming: set[asyncio.Task[None]] = set()
        self.stopping = False

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def agent(self, n: int) -> None:
        agent_id, secret = self.credentials[n]
        host, port = self.servers[n % len(self.servers)]
        auth = {"Authorization": f"Bearer {agent_id}.{secret}"}
        conn = KeepAlive(host, port)
        version = self.version
        while not self.stopping:
            path = f"{routes.AGENT_WAIT}?policy_version={version}&timeout={HOLD_S}&deliver=true"
            try:
                status, raw = await conn.request(build_request(host, port, "GET", path, None, auth))
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.error(type(exc).__name__)
                await asyncio.sleep(1 + random.random())
                continue
            if status == 204:
                continue
            if status != 200:
                self.error(f"wait http {status}")
                await asyncio.sleep(1 + random.random())
                continue
            now = time.monotonic()
            reply = json.loads(raw)
            for action in reply.get("actions") or []:
                self.arrivals.append((action["id"], now))
            policy = reply.get("policy")
            if policy:
                version = policy["version"]
                self.arrivals.append((f"policy:{version}", now))
                window = float(reply.get("report_within_s") or 0)
                task = asyncio.create_task(self._confirm(n, host, port, auth, version, window))
                self.confirming.add(task)
                task.add_done_callback(self.confirming.discard)
        conn.close()

    async def _confirm(
        self, n: int, host: str, port: int, auth: dict[str, str], version: int, window: float
    ) -> None:
        """The check-in that reports the policy applied, at a random moment in the window."""
        await asyncio.sleep(random.uniform(0, window))
        if self.stopping:
            return
        body = dict(checkin_body(n), policy_version=version)
        try:
            status, _ = await call(
                host, port, build_request(host, port, "POST", routes.AGENT_CHECKIN, body, auth)
            )
        except OSError as exc:
            self.error(f"confirm {type(exc).__name__}")
            return
        self.confirms += 1
        if status != 200:
            self.error(f"confirm http {status}")

    def latencies(self, key: str, started: float) -> list[float]:
        return [at - started for k, at in self.arrivals if k == key]


async def _server_waits(host: str, port: int) -> int:
    """The ``esmd_agent_waits`` gauge of the server's /metrics."""
    try:
        status, raw = await call(host, port, build_request(host, port, "GET", "/metrics", None, {}))
    except OSError:
        return 0
    for line in raw.decode().splitlines() if status == 200 else []:
        if line.startswith("esmd_agent_waits "):
            return int(float(line.split()[1]))
    return 0


def _summary(name: str, values: list[float], expected: int, cpu: float, wall: float) -> Any:
    return {
        f"{name}_delivered": len(values),
        f"{name}_expected": expected,
        f"{name}_p50_ms": round(percentile(values, 0.5) * 1000, 1),
        f"{name}_p95_ms": round(percentile(values, 0.95) * 1000, 1),
        f"{name}_max_ms": round(max(values, default=0) * 1000, 1),
        f"{name}_server_cpu_s": round(cpu, 2),
        f"{name}_first_to_last_s": round(wall, 2),
    }


async def _until(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def _measure(
    servers: list[str],
    token: str,
    agents: int,
    store: Path,
    admin: Any,
    samples: int,
    server_pids: list[int],
    database_url: str | None,
) -> dict[str, Any]:
    hosts = [(urlsplit(s).hostname or "127.0.0.1", urlsplit(s).port or 2125) for s in servers]
    host, port = hosts[0]
    if database_url:
        credentials = bulk_enroll(database_url, agents, store)
    else:
        credentials = await enroll_fleet(host, port, token, agents, store)
    fleet = Fleet(hosts, credentials)
    first = {"Authorization": f"Bearer {credentials[0][0]}.{credentials[0][1]}"}
    _, raw = await call(
        host,
        port,
        build_request(host, port, "POST", routes.AGENT_CHECKIN, checkin_body(0), first),
    )
    fleet.version = json.loads(raw)["policy"]["version"]
    started = time.monotonic()
    tasks = []
    for n in range(agents):  # open the polls at ~2,000/s, not in one burst
        tasks.append(asyncio.create_task(fleet.agent(n)))
        if n % 200 == 199:
            await asyncio.sleep(0.1)
    held = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        held = sum([await _server_waits(h, p) for h, p in hosts])
        if held >= agents * 0.99:
            break
        await asyncio.sleep(0.5)
    # A real fleet is 10,000 processes; this is one, holding 10,000 connections and tasks,
    # whose full collections would stop every simulated agent at once. What exists now is
    # left out of collections, and the measurements run without automatic collection.
    gc.collect()
    gc.freeze()
    gc.disable()
    pauses = Pauses()
    result: dict[str, Any] = {
        "agents": agents,
        "servers": len(servers),
        "held": held,
        "seconds_to_hold_all": round(time.monotonic() - started, 1),
    }
    loop = asyncio.get_running_loop()

    async def admin_call(function: Callable[[], Any]) -> Any:
        return await loop.run_in_executor(None, function)

    # 1. An action for one agent at a time.
    one: list[float] = []
    for agent_id, _ in random.sample(credentials, min(samples, agents)):
        begun = time.monotonic()
        action = await admin_call(
            lambda a=agent_id: admin.create_action("checkin", {"agent_id": a}, comment="bench")
        )
        await _until(lambda a=action["id"], b=begun: bool(fleet.latencies(a, b)), 5)
        one += fleet.latencies(action["id"], begun)
    result.update(_summary("agent", one, min(samples, agents), 0, 0))
    result["agent_samples"] = len(one)
    await asyncio.sleep(1)

    # 2. One action for every agent.
    cpu, begun = cpu_seconds(server_pids), time.monotonic()
    action = await admin_call(
        lambda: admin.create_action("checkin", {"query": {"os": "linux"}}, comment="bench")
    )
    result["action_create_ms"] = round((time.monotonic() - begun) * 1000, 1)
    await _until(lambda: len(fleet.latencies(action["id"], begun)) >= held, 60)
    values = fleet.latencies(action["id"], begun)
    wall = max(values, default=0.0) - min(values, default=0.0)
    result.update(_summary("action", values, agents, cpu_seconds(server_pids) - cpu, wall))
    await asyncio.sleep(2)

    # 3. A policy change for every agent (each confirms later by a check-in).
    cpu, begun = cpu_seconds(server_pids), time.monotonic()
    await admin_call(lambda: admin.set_verdict(f"{random.getrandbits(256):064x}", "malware"))
    version = fleet.version + 1
    await _until(lambda: len(fleet.latencies(f"policy:{version}", begun)) >= held, 60)
    values = fleet.latencies(f"policy:{version}", begun)
    wall = max(values, default=0.0) - min(values, default=0.0)
    result.update(_summary("policy", values, agents, cpu_seconds(server_pids) - cpu, wall))
    result["confirm_checkins_meanwhile"] = fleet.confirms
    result["errors"] = fleet.errors
    result["simulator_cpu_s"] = round(time.process_time(), 1)
    result["simulator_gc_pauses_s"] = round(pauses.total, 2)
    result["simulator_longest_gc_pause_ms"] = round(pauses.longest * 1000, 1)
    pauses.close()
    gc.enable()
    gc.unfreeze()
    fleet.stopping = True
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


def measure_wake(
    servers: list[str],
    token: str,
    agents: int,
    store: Path,
    admin: Any,
    samples: int = 50,
    server_pids: list[int] | None = None,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Hold ``agents`` long-polls over ``servers``; measure one-agent and broadcast delivery
    (with ``database_url`` the agents are written into the database, not enrolled)."""
    raise_fd_limit(agents * 2 + 1024)
    install_uvloop()
    return asyncio.run(
        _measure(servers, token, agents, store, admin, samples, server_pids or [], database_url)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="append", required=True, help="repeat for more")
    parser.add_argument("--token", required=True)
    parser.add_argument("--admin-token", required=True, help="for actions and a verdict")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--pid", type=int, action="append", default=[], help="esmd, for CPU")
    parser.add_argument("--store", default="wake-agents.json")
    args = parser.parse_args()
    from trapsapi.admin_client import AdminClient

    admin = AdminClient(args.server[0], token=args.admin_token)
    result = measure_wake(
        args.server, args.token, args.agents, Path(args.store), admin, args.samples, args.pid
    )
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

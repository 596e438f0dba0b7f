"""Wake-channel delivery with a simulated fleet holding long-polls (one socket per agent).

Every agent keeps ``GET /agent/wait`` open. Two measurements, as ``trapsd`` would see them
(the change is delivered when the agent's check-in after the wake-up has returned):

* per-agent news: ``notify_agents`` for sampled agents, one at a time, from a client of the
  PostgreSQL database (the way the action centre in any esmd process wakes an agent), so
  the wake-up travels through LISTEN/NOTIFY;
* a policy change for everybody (a verdict set through the admin API): every agent is woken,
  spread by the server at its wake rate, and checks in.

    python bench/wake_sim.py --server URL --token TOKEN --database-url URL --agents 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loadgen import build_request
from payloads import checkin_body
from sim import call, enroll_fleet

from trapsapi import routes


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's open-file limit (children inherit it); returns the new soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Fleet:
    def __init__(self, host: str, port: int, credentials: list[tuple[str, str]]) -> None:
        self.host, self.port = host, port
        self.credentials = credentials
        self.version = 0
        self.waiting = 0
        self.errors: dict[str, int] = {}
        self.notified_at: dict[str, float] = {}
        self.policy_at = 0.0
        self.agent_delivery: list[float] = []
        self.policy_delivery: list[float] = []
        self.ready_s = 0.0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    async def agent(self, n: int, stop: asyncio.Event) -> None:
        agent_id, secret = self.credentials[n]
        auth = {"Authorization": f"Bearer {agent_id}.{secret}"}
        checkin = build_request(
            self.host, self.port, "POST", routes.AGENT_CHECKIN, checkin_body(n), auth
        )
        version = self.version
        while not stop.is_set():
            path = f"{routes.AGENT_WAIT}?policy_version={version}&timeout=55"
            request = build_request(self.host, self.port, "GET", path, None, auth)
            self.waiting += 1
            try:
                status, raw = await call(self.host, self.port, request)
            except OSError as exc:
                self.error(type(exc).__name__)
                await asyncio.sleep(1 + random.random())
                continue
            finally:
                self.waiting -= 1
            if status == 204:
                continue
            if status != 200:
                self.error(f"wait http {status}")
                await asyncio.sleep(1 + random.random())
                continue
            reason = json.loads(raw)["reason"]
            status, raw = await call(self.host, self.port, checkin)
            done = time.monotonic()
            if status != 200:
                self.error(f"checkin http {status}")
                continue
            version = json.loads(raw)["policy"]["version"]
            if reason == "pending" and agent_id in self.notified_at:
                self.agent_delivery.append(done - self.notified_at.pop(agent_id))
            elif reason == "policy" and self.policy_at:
                self.policy_delivery.append(done - self.policy_at)
                return


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


async def _measure(
    server: str,
    token: str,
    agents: int,
    store: Path,
    notify: Callable[[list[str]], None],
    change_policy: Callable[[], None],
    samples: int,
) -> dict[str, Any]:
    parts = urlsplit(server)
    host, port = parts.hostname or "127.0.0.1", parts.port or 2125
    credentials = await enroll_fleet(host, port, token, agents, store)
    fleet = Fleet(host, port, credentials)
    _, raw = await call(
        host,
        port,
        build_request(
            host,
            port,
            "POST",
            routes.AGENT_CHECKIN,
            checkin_body(0),
            {"Authorization": f"Bearer {credentials[0][0]}.{credentials[0][1]}"},
        ),
    )
    fleet.version = json.loads(raw)["policy"]["version"]
    stop = asyncio.Event()
    started = time.monotonic()
    tasks = []
    for n in range(agents):  # open the polls at ~2,000/s, not in one burst
        tasks.append(asyncio.create_task(fleet.agent(n, stop)))
        if n % 200 == 199:
            await asyncio.sleep(0.1)
    # Sample only once the server holds the polls (its gauge), not when they were sent.
    deadline = time.monotonic() + 120
    held = 0
    while time.monotonic() < deadline:
        held = await _server_waits(host, port)
        if held >= agents * 0.99:
            break
        await asyncio.sleep(0.5)
    fleet.ready_s = round(time.monotonic() - started, 1)
    loop = asyncio.get_running_loop()
    for agent_id, _ in random.sample(credentials, min(samples, agents)):
        fleet.notified_at[agent_id] = time.monotonic()
        await loop.run_in_executor(None, notify, [agent_id])
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + 10
    while fleet.notified_at and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    fleet.policy_at = time.monotonic()
    await loop.run_in_executor(None, change_policy)
    deadline = time.monotonic() + 90
    while len(fleet.policy_delivery) < held and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "agents": agents,
        "held": held,
        "agent_samples": len(fleet.agent_delivery),
        "agent_p50_ms": round(percentile(fleet.agent_delivery, 0.5) * 1000, 1),
        "agent_p95_ms": round(percentile(fleet.agent_delivery, 0.95) * 1000, 1),
        "policy_delivered": len(fleet.policy_delivery),
        "policy_p50_ms": round(percentile(fleet.policy_delivery, 0.5) * 1000, 1),
        "policy_p95_ms": round(percentile(fleet.policy_delivery, 0.95) * 1000, 1),
        "policy_max_ms": round(max(fleet.policy_delivery, default=0) * 1000, 1),
        "errors": fleet.errors,
        "seconds_to_hold_all": fleet.ready_s,
    }


def measure_wake(
    server: str,
    token: str,
    agents: int,
    store: Path,
    notify: Callable[[list[str]], None],
    change_policy: Callable[[], None],
    samples: int = 200,
) -> dict[str, Any]:
    """Hold ``agents`` long-polls; measure per-agent and policy-change delivery."""
    raise_fd_limit(agents * 2 + 1024)
    return asyncio.run(_measure(server, token, agents, store, notify, change_policy, samples))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--admin-token", required=True, help="to set a verdict (policy change)")
    parser.add_argument("--database-url", required=True, help="the PostgreSQL of the server")
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--store", default="wake-agents.json")
    args = parser.parse_args()
    from sqlalchemy import create_engine

    from esmd.services.wake import notify_agents
    from trapsapi.admin_client import AdminClient

    engine = create_engine(args.database_url)
    admin = AdminClient(args.server, token=args.admin_token)

    def notify(ids: list[str]) -> None:
        with engine.begin() as connection:
            notify_agents(connection, ids)

    def change() -> None:
        admin.set_verdict(f"{random.getrandbits(256):064x}", "malware", "wake bench")

    result = measure_wake(args.server, args.token, args.agents, Path(args.store), notify, change)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

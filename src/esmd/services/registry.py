"""The communication-server registry: this process's heartbeat row and the live server list.

Every ``esmd serve`` process writes one row in ``servers`` at start and refreshes it every
``server_heartbeat_s`` (address, version, agents served, requests/s). A server whose row is
older than three periods is gone. Agents are told this server's own URL first, then the
addresses of the other live servers, so they can fail over along the list with no load
balancer in front. A configured ``ESMD_PUBLIC_URLS`` is authoritative: agents get exactly
that list (say, names behind a load balancer), and the row advertises its first URL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update

from esmd import __version__
from esmd.config import Settings
from esmd.db.engine import Database
from esmd.db.tables_servers import SERVERS
from esmd.metrics import Metrics
from esmd.services.policy import current_version
from esmd.timeutil import utcnow
from trapsapi.models_servers import ServerPublic

ALIVE_PERIODS = 3
FORGET_AFTER = timedelta(days=7)


class Registry:
    """This process's row in ``servers`` and the cached addresses of the live ones."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.id = str(uuid.uuid4())
        self.started_at = utcnow()
        self.address = settings.public_urls[0] if settings.public_urls_configured else ""
        self.on_learned: Callable[[], None] = lambda: None
        self.live: list[str] = []
        self._agents: dict[str, float] = {}
        self._requests = 0
        self._tick = time.monotonic()

    def saw_agent(self, agent_id: str) -> None:
        self._agents[agent_id] = time.monotonic()

    def learn(self, scheme: str, server: tuple[str, int] | None) -> None:
        """Take this server's address from the socket a request came in on (ASGI ``server``):
        the port really bound, whatever the settings say (``--port 0``, tests)."""
        if server is None or self.address:
            return
        host, port = server
        host = f"[{host}]" if ":" in host else host
        self.address = f"{scheme}://{host}:{port}"
        self.on_learned()

    def servers_for(self, request_base_url: str) -> list[str]:
        """What agents are told: the URL(s) for this server, then the other live servers."""
        own = self.settings.servers_for(request_base_url)
        if self.settings.public_urls_configured:  # the operator's list is authoritative
            return own
        return own + [url for url in self.live if url not in own]

    def beat(self, db: Database) -> int:
        """Write this process's row, read the live addresses; returns the policy version."""
        now = utcnow()
        clock = time.monotonic()
        requests = sum(self.metrics.requests.values())
        rate = (requests - self._requests) / max(clock - self._tick, 1e-3)
        self._requests, self._tick = requests, clock
        window = self.settings.heartbeat_interval_s + self.settings.heartbeat_grace_s
        for agent_id in [a for a, seen in self._agents.items() if clock - seen > window]:
            del self._agents[agent_id]
        values = {
            "address": self.address,  # "" until known (port 0): never advertised
            "version": __version__,
            "last_seen": now,
            "agents_served": len(self._agents),
            "requests_per_s": round(rate, 1),
            "heartbeat_s": self.settings.server_heartbeat_s,
        }
        with db.write() as connection:
            updated = connection.execute(
                update(SERVERS).where(SERVERS.c.id == self.id).values(values)
            ).rowcount
            if not updated:
                connection.execute(
                    insert(SERVERS).values(id=self.id, started_at=self.started_at, **values)
                )
            connection.execute(delete(SERVERS).where(SERVERS.c.last_seen < now - FORGET_AFTER))
            rows = connection.execute(
                select(SERVERS.c.address, SERVERS.c.last_seen, SERVERS.c.heartbeat_s)
                .where(SERVERS.c.id != self.id, SERVERS.c.address != "")
                .order_by(SERVERS.c.started_at)
            ).all()
            live = (row.address for row in rows if is_alive(row.last_seen, row.heartbeat_s, now))
            self.live = list(dict.fromkeys(live))
            return current_version(connection)

    def leave(self, db: Database) -> None:
        """Mark this process gone at once (a clean shutdown), instead of after 3 periods."""
        period = self.settings.server_heartbeat_s
        gone = utcnow() - timedelta(seconds=(ALIVE_PERIODS + 1) * period)
        with db.write() as connection:
            connection.execute(
                update(SERVERS).where(SERVERS.c.id == self.id).values(last_seen=gone)
            )


def is_alive(last_seen: datetime, heartbeat_s: float, now: datetime) -> bool:
    return last_seen > now - timedelta(seconds=ALIVE_PERIODS * heartbeat_s)


def list_servers(db: Database) -> list[ServerPublic]:
    now = utcnow()
    with db.read() as connection:
        rows = connection.execute(
            select(SERVERS).order_by(SERVERS.c.last_seen.desc(), SERVERS.c.id)
        ).all()
    return [
        ServerPublic(
            id=row.id,
            address=row.address,
            version=row.version,
            started_at=row.started_at,
            last_seen=row.last_seen,
            alive=is_alive(row.last_seen, row.heartbeat_s, now),
            agents_served=row.agents_served,
            requests_per_s=row.requests_per_s,
        )
        for row in rows
    ]

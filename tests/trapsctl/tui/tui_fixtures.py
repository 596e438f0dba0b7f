"""Deterministic data and a fake ESM client for the dashboard tests and snapshots.

"Now" is frozen at :data:`NOW`, so relative times ("5m ago") never change between runs.
"""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.text import Text
from textual.widgets import DataTable, Static

from trapsapi.enums import SEVERITY_ORDER, Severity
from trapsapi.errors import Conflict, NotFound
from trapsctl.tui.app import DashboardApp, make_dashboard
from trapsctl.tui.views.table_view import TableView

NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
SERVER = "https://esm.example.org:8443"

COUNT_CAP = 10_000


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def module(name: str, mechanism: str, healthy: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": extra.get("enabled", True),
        "mode": extra.get("mode", "prevention"),
        "mechanism": mechanism,
        "healthy": healthy,
        "detail": extra.get("detail", ""),
    }


FULL_MODULES = [
    module("malware", "fanotify"),
    module("exploit", "proc-connector"),
    module("restrictions", "fanotify", mode="notification"),
]


def agent(n: int, hostname: str, **fields: Any) -> dict[str, Any]:
    return {
        "agent_id": f"a1b2c3d4-0000-4000-8000-{n:012d}",
        "hostname": hostname,
        "os": "linux",
        "os_version": "Debian 13",
        "agent_version": "0.1.0",
        "ips": [f"10.0.0.{10 + n}"],
        "enrolled_at": "2026-11-01T08:00:00Z",
        "last_checkin_at": at(0.5),
        "health": "connected",
        "status": "protected",
        "modules": FULL_MODULES,
        "footprint": {"rss_bytes": 24117248, "cpu_percent": 0.04, "disk_bytes": 1048576},
        "policy_version": 3,
        "outbox_depth": 0,
        "events_dropped": 0,
        **fields,
    }


AGENTS = [
    agent(1, "web-01", ips=["10.0.0.11", "fe80::1"]),
    agent(2, "web-02", os_version="Ubuntu 24.04", last_checkin_at=at(1)),
    agent(
        3,
        "db-01",
        status="partially_protected",
        modules=[
            module("malware", "psutil-poll", healthy=False, detail="not root"),
            module("exploit", "proc-connector"),
        ],
        outbox_depth=17,
    ),
    agent(
        4,
        "build-07",
        health="disconnected",
        status="unprotected",
        last_checkin_at=at(60 * 26),
        modules=[],
        footprint=None,
        policy_version=None,
        events_dropped=3,
    ),
    agent(5, "mail-01", os="linux", os_version="RHEL 9.4", agent_version="0.0.9"),
    agent(6, "jump-01", last_checkin_at=None, health="disconnected", status="unprotected"),
]

SHA_EVIL = "3f" * 32
SHA_MINER = "9c" * 32
SHA_TOOL = "0d" * 32


def event(n: int, minutes_ago: float, severity: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"e0000000-0000-4000-8000-{n:012d}",
        "agent_id": AGENTS[0]["agent_id"],
        "hostname": "web-01",
        "time": at(minutes_ago),
        "received_at": at(minutes_ago),
        "module": "malware",
        "severity": severity,
        "action": "prevented",
        "process_path": "/tmp/evil-sleep",
        "sha256": SHA_EVIL,
        "pid": 4242 + n,
        "ppid": 1000,
        "parent_path": "/usr/bin/bash",
        "user": "alice",
        "uid": 1000,
        "cmdline": "/tmp/evil-sleep 30",
        "details": {},
        **fields,
    }


EVENTS = [
    event(
        1,
        2,
        "critical",
        hostname="db-01",
        process_path="/dev/shm/xmrig",
        sha256=SHA_MINER,
        user="postgres",
        uid=26,
        cmdline="/dev/shm/xmrig -o pool.example:3333",
        parent_path="/usr/lib/postgresql/16/bin/postgres",
    ),
    event(
        2,
        7,
        "high",
        details={
            "rule": "no-exec-from-tmp",
            "forensics": "forensics/web-01/4244.tar.zst",
            "ancestors": [
                {"pid": 880, "path": "/usr/sbin/sshd", "cmdline": "sshd: alice", "user": "root"},
                {"pid": 1, "path": "/sbin/init", "user": "root"},
            ],
        },
    ),
    event(
        3,
        15,
        "medium",
        module="exploit",
        action="killed",
        hostname="web-02",
        process_path="/usr/bin/python3",
        sha256=None,
        cmdline="python3 -c 'import pty'",
    ),
    event(
        4,
        42,
        "low",
        action="notified",
        module="restrictions",
        hostname="mail-01",
        process_path="/home/bob/bin/nc",
        sha256=SHA_TOOL,
        user="bob",
        uid=1001,
        cmdline="nc -lvp 4444",
    ),
    event(5, 95, "informational", action="notified", sha256=SHA_TOOL, hostname="web-02"),
    event(
        6,
        180,
        "high",
        hostname="db-01",
        process_path="/tmp/\x1b[2J[red]x[/red]",
        user=None,
        uid=None,
    ),
    event(7, 300, "medium", hostname="build-07"),
    event(8, 600, "high"),
    event(
        9,
        610,
        "critical",
        hostname="build-07",
        sha256=SHA_MINER,
        process_path="/var/tmp/.x/kworker",
    ),
    event(10, 1300, "low", action="notified"),
]

HASHES = [
    {
        "sha256": SHA_EVIL,
        "verdict": "malware",
        "source": "admin",
        "comment": "make demo binary",
        "updated_at": at(120),
        "updated_by": "admin",
    },
    {
        "sha256": SHA_TOOL,
        "verdict": "benign",
        "source": "admin",
        "comment": "netcat (ops)",
        "updated_at": at(60 * 30),
        "updated_by": "soc-lead",
    },
    {
        "sha256": "77" * 32,
        "verdict": "grayware",
        "source": "wildfire",
        "comment": "",
        "updated_at": at(60 * 24 * 3),
        "updated_by": "system",
    },
]


class FakeClient:
    """The AdminClient calls the dashboard makes, answered from the lists above.

    ``fail`` (an exception) makes every call raise it; ``gate`` (an Event) makes calls wait
    for it, standing in for a slow server.
    """

    def __init__(
        self,
        agents: list[dict[str, Any]] | None = None,
        events: list[dict[str, Any]] | None = None,
        hashes: list[dict[str, Any]] | None = None,
    ) -> None:
        self.agents = list(AGENTS if agents is None else agents)
        self.events = list(EVENTS if events is None else events)
        self.hashes = list(HASHES if hashes is None else hashes)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        import fleet_fixtures as fleet  # it uses this module's data

        self.fleet = fleet
        self.policies = list(fleet.POLICIES)
        self.history = list(fleet.HISTORY)
        self.actions = copy.deepcopy(fleet.ACTIONS)  # cancel changes them
        self.servers = list(fleet.SERVERS)

    @property
    def server(self) -> str:
        return SERVER

    def _answer(self, name: str, rows: list[dict[str, Any]], filters: dict[str, Any]) -> Any:
        self.calls.append((name, filters))
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        if filters.get("hostname"):
            rows = [r for r in rows if filters["hostname"].lower() in r["hostname"].lower()]
        if filters.get("severity"):  # the minimum, as the ESM does
            floor = SEVERITY_ORDER[Severity(filters["severity"])]
            rows = [r for r in rows if SEVERITY_ORDER[Severity(r["severity"])] >= floor]
        if filters.get("status"):
            rows = [r for r in rows if (r.get("status") or "new") == filters["status"]]
        for key in ("module", "sha256", "agent_id"):
            if filters.get(key):
                rows = [r for r in rows if r.get(key) == filters[key]]
        limit = filters.get("limit") or 100
        offset = filters.get("offset") or 0
        # As the ESM: the count stops at 10,000 and says so.
        count = min(len(rows), COUNT_CAP)
        page = rows[offset : offset + limit]
        return {"data": page, "count": count, "count_capped": len(rows) > COUNT_CAP}

    def list_agents(self, **filters: Any) -> Any:
        return self._answer("list_agents", self.agents, filters)

    def list_events(self, **filters: Any) -> Any:
        return self._answer("list_events", self.events, filters)

    def list_hashes(self, **filters: Any) -> Any:
        return self._answer("list_hashes", self.hashes, filters)

    def _call(self, call: str, **args: Any) -> None:
        self.calls.append((call, args))
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail

    def event_counts(self, **filters: Any) -> Any:
        self._call("event_counts", **filters)
        return self.fleet.counts_of(self.events)

    def list_policies(self) -> Any:
        self._call("list_policies")
        return {"data": self.policies, "count": len(self.policies)}

    def get_policy(self, name: str) -> Any:
        self._call("get_policy", name=name)
        found = [p for p in self.policies if p["name"] == name]
        if not found:
            raise NotFound(f"no policy {name!r}")
        return found[0]

    def policy_history(self, **filters: Any) -> Any:
        self._call("policy_history", **filters)
        rows = self.history
        if filters.get("policy"):
            rows = [h for h in rows if filters["policy"] in h["policy"].split(",")]
        return {"data": rows[: filters.get("limit") or 100], "count": len(rows)}

    def explain_agent_policy(self, agent_id: str) -> Any:
        self._call("explain_agent_policy", agent_id=agent_id)
        (agent,) = [a for a in self.agents if a["agent_id"] == agent_id]
        return self.fleet.explain(agent)

    def list_actions(self, **filters: Any) -> Any:
        return self._answer("list_actions", self.actions, filters)

    def get_action(self, action_id: str) -> Any:
        self._call("get_action", action_id=action_id)
        (found,) = [a for a in self.actions if a["id"] == action_id]
        deliveries = self.fleet.DELIVERIES if found["type"] == "scan" else []
        return {**found, "deliveries": deliveries}

    def create_action(
        self,
        kind: str,
        target: dict[str, Any],
        params: dict[str, Any] | None = None,
        expires_in_s: int = 86400,
        comment: str = "",
    ) -> Any:
        self._call("create_action", kind=kind, target=target, params=params, comment=comment)
        action = self.fleet.action(
            len(self.actions) + 100, kind, 0, target=target, params=params or {},
            comment=comment, progress={"pending": 1}, done=False,
        )  # fmt: skip
        self.actions.insert(0, action)
        return action

    def cancel_action(self, action_id: str) -> Any:
        self._call("cancel_action", action_id=action_id)
        (found,) = [a for a in self.actions if a["id"] == action_id]
        if found["cancelled"] or not found["progress"].get("pending"):
            raise Conflict("nothing left to cancel")
        found["cancelled"] = True
        found["progress"] = {"cancelled": found["progress"].pop("pending"), **found["progress"]}
        return found

    def list_servers(self) -> Any:
        self._call("list_servers")
        return {"data": self.servers, "count": len(self.servers)}

    def set_verdict(self, sha256: str, verdict: str, comment: str = "") -> Any:
        self.calls.append(("set_verdict", {"sha256": sha256, "verdict": verdict}))
        if self.fail is not None:
            raise self.fail
        row = {
            "sha256": sha256,
            "verdict": verdict,
            "source": "admin",
            "comment": comment,
            "updated_at": NOW.isoformat(),
            "updated_by": "admin",
        }
        self.hashes = [h for h in self.hashes if h["sha256"] != sha256]
        self.hashes.insert(0, row)
        return row

    def triage_event(self, event_id: str, agent_id: str | None = None, **changes: Any) -> Any:
        self.calls.append(("triage_event", {"event_id": event_id, "agent_id": agent_id, **changes}))
        if self.fail is not None:
            raise self.fail
        (event,) = [e for e in self.events if e["id"] == event_id]
        event.update({k: v for k, v in changes.items() if v is not None})
        return dict(event)


def fixture_app(
    client: FakeClient | None = None, refresh_interval: float = 0, slow_after: float = 3.0
) -> DashboardApp:
    """The dashboard on the fake client, with "now" frozen and no periodic refresh."""
    return make_dashboard(
        client or FakeClient(),
        clock=lambda: NOW,
        refresh_interval=refresh_interval,
        slow_after=slow_after,
    )


async def settle(pilot: Any) -> None:
    """Wait until no worker runs and the messages they posted are handled."""
    app = pilot.app
    for _ in range(500):
        if not any(worker.is_running for worker in app.workers):
            break
        await pilot.pause(0.01)
    await pilot.pause()


def view(app: DashboardApp, name: str) -> TableView:
    """The tab's table view (``agents``, ``events``, ``policies``…)."""
    return app.query_one(f"#{name}-view", TableView)


def plain(content: object) -> str:
    return content.plain if isinstance(content, Text) else str(content)


def table_text(app: DashboardApp, name: str) -> list[str]:
    """Each row of the tab's table as one line of its cells' text."""
    table = view(app, name).query_one(DataTable)
    return [" ".join(plain(c) for c in table.get_row_at(i)) for i in range(table.row_count)]


def detail(app: DashboardApp, name: str) -> str:
    """The text of the tab's detail pane."""
    return plain(view(app, name).query_one(".detail", Static).content)

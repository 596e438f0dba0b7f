"""A scripted daemon for the console tests: fixed replies, "now" frozen at :data:`NOW`."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from trapsd.console.app import ConsoleApp, make_console

NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
SERVER = "https://esm.example.org:8443"
AGENT_ID = "a1b2c3d4-0000-4000-8000-000000000001"


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


def module(name: str, healthy: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": extra.get("enabled", True),
        "mode": extra.get("mode", "prevention"),
        "mechanism": extra.get("mechanism", "fanotify"),
        "healthy": healthy,
        "detail": extra.get("detail", "FAN_OPEN_EXEC_PERM on 3 mounts"),
    }


STATUS = {
    "version": "0.1.0",
    "agent_id": AGENT_ID,
    "state_dir": "/var/lib/trapsd",
    "pid": 4321,
    "running": True,
    "started_at": at(90),
    "server": SERVER,
    "servers": [SERVER, "https://esm2.example.org:8443"],
    "last_checkin": {"ok": True, "time": at(2)},
    "last_success": at(2),
    "connected": True,
    "heartbeat_interval_s": 300,
    "policy_version": 7,
    "outbox_depth": 0,
    "events_dropped": 0,
    "modules": [
        module("malware"),
        module("restrictions", mode="notification"),
        module("child_process", False, mechanism="psutil", detail="cannot decide before exec"),
    ],
    "sensor_stats": {},
    "console": "visible",
}


def event(n: int, minutes_ago: float, severity: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"e0000000-0000-4000-8000-{n:012d}",
        "time": at(minutes_ago),
        "module": "malware",
        "severity": severity,
        "action": "prevented",
        "process_path": "/tmp/evil-sleep",
        "sha256": "3f" * 32,
        "pid": 4242 + n,
        "ppid": 1000,
        "parent_path": "/usr/bin/bash",
        "user": "alice",
        "uid": 1000,
        "cmdline": "/tmp/evil-sleep 30",
        "details": {"rule": "blocked hash"},
        **fields,
    }


EVENTS = [
    event(1, 3, "critical", process_path="/dev/shm/xmrig", user="postgres", uid=26),
    event(2, 9, "high"),
    event(3, 30, "medium", module="restrictions", action="notified", process_path="/tmp/x"),
    event(4, 65, "low", action="notified", process_path="/tmp/\x1b[2J[red]x[/red]"),
]
REPLIES: dict[str, dict[str, Any]] = {
    "status": {"ok": True, "status": STATUS},
    "events": {"ok": True, "events": EVENTS},
    "processes": {
        "ok": True,
        "mechanism": "proc-connector",
        "tracked": 212,
        "stats": {},
        "processes": [
            {
                "pid": 812,
                "ppid": 1,
                "exe": "/usr/sbin/nginx",
                "uids": [0, 0, 0],
                "protected_by": ["child_process"],
            },
            {
                "pid": 990,
                "ppid": 1,
                "exe": "/usr/lib/postgresql/16/bin/postgres",
                "uids": [26],
                "protected_by": ["child_process", "ptrace"],
            },
        ],
    },
    "policy": {
        "ok": True,
        "policy_version": 7,
        "heartbeat_interval_s": 300,
        "blocked_hashes": 12,
        "allowed_hashes": 3,
        "modules": [{"name": "malware"}, {"name": "restrictions"}],
        "behaviour": {"unknown_file": "notify"},
    },
    "policy-log": {
        "ok": True,
        "entries": [
            {"time": at(120), "version": 6, "changed": ["restrictions"]},
            {"time": at(20), "version": 7, "changed": ["malware"]},
        ],
    },
    "checkin": {
        "ok": True,
        "time": at(0),
        "server": SERVER,
        "error": None,
        "policy_version": 8,
        "elapsed_s": 0.12,
    },
}


class ScriptedSource:
    """The control socket of a scripted daemon.

    ``unknown``: commands this "older agent" does not know; ``fail``: an exception every call
    raises (the daemon gone); ``gate``: an Event calls wait for (a slow daemon).
    """

    def __init__(self, unknown: set[str] | None = None) -> None:
        self.replies = {k: dict(v) for k, v in REPLIES.items()}
        self.unknown = unknown or set()
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        self.calls: list[dict[str, Any]] = []

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(request)
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        command = str(request.get("cmd"))
        if command in self.unknown or command not in self.replies:
            return {"ok": False, "error": f"unknown command {command!r}", "exit_code": 2}
        return self.replies[command]

    def commands(self) -> list[str]:
        return [str(c.get("cmd")) for c in self.calls]


def fixture_console(
    source: ScriptedSource | None = None, refresh_interval: float = 0
) -> ConsoleApp:
    return make_console(
        source or ScriptedSource(), clock=lambda: NOW, refresh_interval=refresh_interval
    )


async def settle(pilot: Any) -> None:
    """Wait until no worker runs and the messages they posted are handled."""
    app = pilot.app
    for _ in range(500):
        if not any(worker.is_running for worker in app.workers):
            break
        await pilot.pause(0.01)
    await pilot.pause()

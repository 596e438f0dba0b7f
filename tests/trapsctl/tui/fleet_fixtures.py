"""Fixture data for the Policies, Actions and Servers tabs and the events chart (frozen "now")."""

from __future__ import annotations

from typing import Any

from tui_fixtures import AGENTS, NOW, at

POLICIES: list[dict[str, Any]] = [
    {
        "name": "baseline",
        "description": "Every agent: malware prevention, notify on unknown files.",
        "priority": 0,
        "enabled": True,
        "targets": {"include": {"all": True}, "exclude": {}},
        "rules": {"malware": {"mode": "prevention", "unknown_file": "notify"}},
        "created_at": at(60 * 24 * 20),
        "updated_at": at(60 * 24 * 2),
        "updated_by": "admin",
    },
    {
        "name": "db-servers",
        "description": "Databases: no exec from /tmp, child processes of postgres watched.",
        "priority": 50,
        "enabled": True,
        "targets": {"include": {"labels": ["db"], "hostnames": ["db-*"]}, "exclude": {}},
        "rules": {
            "restrictions": {"mode": "prevention", "paths": ["/tmp", "/dev/shm"]},
            "child_process": {"mode": "prevention", "parents": ["postgres"]},
            "agent": {"heartbeat_interval_s": 30},
        },
        "created_at": at(60 * 24 * 10),
        "updated_at": at(90),
        "updated_by": "soc-lead",
    },
    {
        "name": "legacy-build",
        "description": "",
        "priority": -10,
        "enabled": False,
        "targets": {"include": {"hostnames": ["build-*"]}, "exclude": {"labels": ["ci"]}},
        "rules": {},
        "created_at": at(60 * 24 * 40),
        "updated_at": at(60 * 24 * 40),
        "updated_by": "admin",
    },
]

HISTORY: list[dict[str, Any]] = [
    {
        "version": 7, "at": at(90), "actor": "soc-lead", "action": "apply",
        "policy": "db-servers", "changes": {"db-servers": "updated"}, "snapshot": [],
    },
    {
        "version": 6, "at": at(60 * 24 * 2), "actor": "admin", "action": "apply",
        "policy": "baseline,db-servers",
        "changes": {"baseline": "updated", "db-servers": "created"}, "snapshot": [],
    },
    {
        "version": 2, "at": at(60 * 24 * 40), "actor": "admin", "action": "apply",
        "policy": "legacy-build", "changes": {"legacy-build": "created"}, "snapshot": [],
    },
]  # fmt: skip


def explain(agent: dict[str, Any]) -> dict[str, Any]:
    return {
        "agent_id": agent["agent_id"],
        "hostname": agent["hostname"],
        "os": agent["os"],
        "labels": ["db"],
        "group": None,
        "version": 7,
        "matched": [
            {"name": "db-servers", "priority": 50, "specificity": "label", "matched": "label 'db'"},
            {"name": "baseline", "priority": 0, "specificity": "all", "matched": "all"},
        ],
        "skipped": [{"name": "legacy-build", "reason": "disabled"}],
        "settings": [
            {
                "setting": "malware.mode",
                "value": "prevention",
                "policy": "baseline",
                "reason": "only policy that sets it",
                "losers": [],
            },
            {
                "setting": "restrictions.mode",
                "value": "prevention",
                "policy": "db-servers",
                "reason": "priority 50",
                "losers": [{"policy": "baseline", "value": "notification", "reason": "priority 0"}],
            },
            {
                "setting": "agent.heartbeat_interval_s",
                "value": 30,
                "policy": "db-servers",
                "reason": "only policy that sets it",
                "losers": [],
            },
            {
                "setting": "forensics.enabled",
                "value": True,
                "policy": None,
                "reason": "no policy sets it",
                "losers": [],
            },
        ],
        "effective": {},
    }


def action(n: int, kind: str, minutes_ago: float, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"ac000000-0000-4000-8000-{n:012d}",
        "type": kind,
        "params": {},
        "target": {"agent_id": AGENTS[0]["agent_id"]},
        "comment": "",
        "created_by": "admin",
        "created_at": at(minutes_ago),
        "expires_at": at(minutes_ago - 60 * 24),
        "cancelled": False,
        "agents": 1,
        "progress": {"succeeded": 1},
        "done": True,
        **fields,
    }


ACTIONS: list[dict[str, Any]] = [
    action(
        1, "scan", 3, params={"paths": ["/tmp", "/home"]}, target={"label": "web"}, agents=4,
        progress={"pending": 1, "delivered": 1, "succeeded": 1, "failed": 1}, done=False,
        comment="sweep after the xmrig alert",
    ),
    action(2, "isolate", 20, target={"agent_id": AGENTS[2]["agent_id"]}, params={"grace_s": 120}),
    action(
        3, "retrieve_logs", 60 * 5, target={"query": {"hostname": "build-*"}}, agents=2,
        progress={"expired": 1, "succeeded": 1},
    ),
    action(
        4, "kill_process", 60 * 30, params={"pid": 4243}, cancelled=True,
        progress={"cancelled": 1}, created_by="soc-lead",
    ),
]  # fmt: skip

DELIVERIES: list[dict[str, Any]] = [
    {
        "agent_id": AGENTS[0]["agent_id"], "hostname": "web-01", "state": "succeeded",
        "delivered_at": at(2.5), "finished_at": at(2),
        "result": {"files": 5120, "malware": 1}, "detail": "", "has_logs": False,
    },
    {
        "agent_id": AGENTS[1]["agent_id"], "hostname": "web-02", "state": "failed",
        "delivered_at": at(2.5), "finished_at": at(1),
        "result": None, "detail": "/home: permission denied", "has_logs": False,
    },
    {
        "agent_id": AGENTS[4]["agent_id"], "hostname": "mail-01", "state": "delivered",
        "delivered_at": at(1), "finished_at": None, "result": None, "detail": "",
        "has_logs": False,
    },
    {
        "agent_id": AGENTS[5]["agent_id"], "hostname": "jump-01", "state": "pending",
        "delivered_at": None, "finished_at": None, "result": None, "detail": "",
        "has_logs": False,
    },
]  # fmt: skip

SERVERS: list[dict[str, Any]] = [
    {
        "id": "esm-1f2e", "address": "https://esm-1.example.org:8443", "version": "0.1.0",
        "started_at": at(60 * 24 * 3), "last_seen": at(0.2), "alive": True,
        "agents_served": 4, "requests_per_s": 12.4,
    },
    {
        "id": "esm-7a9c", "address": "https://esm-2.example.org:8443", "version": "0.1.0",
        "started_at": at(60 * 24 * 3), "last_seen": at(0.3), "alive": True,
        "agents_served": 2, "requests_per_s": 3.05,
    },
    {
        "id": "esm-old1", "address": "https://esm-3.example.org:8443", "version": "0.0.9",
        "started_at": at(60 * 24 * 9), "last_seen": at(60 * 6), "alive": False,
        "agents_served": 0, "requests_per_s": 0.0,
    },
]  # fmt: skip


def counts_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    """``event_counts`` of the events (hourly buckets with events, oldest first)."""
    buckets: dict[str, int] = {}
    for event in events:
        hour = event["time"][:13] + ":00:00+00:00"
        buckets[hour] = buckets.get(hour, 0) + 1
    return {
        "total": len(events),
        "since": NOW.isoformat(),
        "bucket": "hour",
        "by_module": {},
        "by_severity": {},
        "by_status": {},
        "by_time": [{"start": k, "count": n} for k, n in sorted(buckets.items())],
    }

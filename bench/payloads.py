"""Realistic agent payloads for the benchmarks and the fleet simulator."""

from __future__ import annotations

import platform
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any


def checkin_body(n: int) -> dict[str, Any]:
    return {
        "hostname": f"bench-{n:05d}",
        "os": "linux",
        "os_version": platform.release(),
        "agent_version": "0.1.0",
        "ips": ["10.0.0.1", "fe80::1"],
        "modules": [
            {
                "name": "malware",
                "enabled": True,
                "mode": "prevention",
                "mechanism": "fanotify",
                "healthy": True,
                "detail": "",
            },
        ],
        "footprint": {"rss_bytes": 25_000_000, "cpu_percent": 0.01, "disk_bytes": 1_000_000},
        "policy_version": 1,
        "outbox_depth": 0,
        "events_dropped": 0,
    }


def event(n: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat(),
        "module": "malware",
        "severity": "high",
        "action": "prevented",
        "process_path": f"/tmp/bench/evil-{n}",
        "sha256": secrets.token_hex(32),
        "pid": 1000 + n,
        "ppid": 1,
        "parent_path": "/bin/bash",
        "user": "root",
        "uid": 0,
        "cmdline": f"/tmp/bench/evil-{n} --flag",
        "details": {},
    }

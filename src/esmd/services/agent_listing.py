"""The agents listing on its fast path: Core rows straight to the JSON of ``Page[AgentPublic]``.

``GET /agents`` with 1,000 rows spent most of its time building and re-validating pydantic
models (ORM objects -> AgentPublic -> FastAPI's response validation -> JSON). Here each row
becomes the same JSON directly; tests/esmd/test_esmd_agent_listing.py keeps the two equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from esmd.config import Settings
from esmd.services.agents import health_of, status_of
from esmd.timeutil import as_utc

MODULE_DEFAULTS = {"detail": ""}


def _time(value: datetime | None) -> str | None:
    """As pydantic writes an aware datetime: ISO 8601, ``Z`` for UTC."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def _module(module: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": module["name"],
        "enabled": bool(module["enabled"]),
        "mode": module["mode"],
        "mechanism": module["mechanism"],
        "healthy": bool(module["healthy"]),
        "detail": module.get("detail", ""),
    }


def _footprint(footprint: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not footprint:
        return None
    return {
        "rss_bytes": int(footprint["rss_bytes"]),
        "cpu_percent": float(footprint["cpu_percent"]),
        "disk_bytes": int(footprint["disk_bytes"]),
    }


def agent_json(row: Mapping[Any, Any], settings: Settings, now: datetime) -> dict[str, Any]:
    """One ``agents`` row as the JSON object of AgentPublic."""
    modules = row["modules"] or []
    return {
        "agent_id": row["agent_id"],
        "hostname": row["hostname"],
        "os": row["os"],
        "os_version": row["os_version"],
        "agent_version": row["agent_version"],
        "ips": list(row["ips"] or []),
        "enrolled_at": _time(row["enrolled_at"]),
        "last_checkin_at": _time(row["last_checkin_at"]),
        "health": health_of(row["last_checkin_at"], settings, now).value,
        "status": status_of(modules).value,
        "modules": [_module(m) for m in modules],
        "footprint": _footprint(row["footprint"]),
        "policy_version": row["policy_version"],
        "outbox_depth": row["outbox_depth"],
        "events_dropped": row["events_dropped"],
    }


def page_json(
    rows: Sequence[Mapping[Any, Any]], count: int, settings: Settings, now: datetime
) -> bytes:
    data = [agent_json(row, settings, now) for row in rows]
    return json.dumps({"data": data, "count": count}, separators=(",", ":")).encode()

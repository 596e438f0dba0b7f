"""Helpers of the esmd tests: a harness around ``live_esm`` (real uvicorn, real clients).

A module with a unique name (not ``conftest``) so that test modules can import it safely.
"""

from __future__ import annotations

import http.client
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select, text

from trapsapi.admin_client import AdminClient
from trapsapi.agent_client import AgentClient, enroll

PASSWORD = "another long password"
# The superuser that tests/conftest.py's ``esm_settings`` creates.
ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct horse battery staple"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    @property
    def detail(self) -> str:
        detail = self.json["detail"]
        assert isinstance(detail, str)
        return detail


def new_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat(),
        "module": "malware",
        "severity": "high",
        "action": "prevented",
        "process_path": "/tmp/evil",
        "sha256": "ab" * 32,
        "pid": 4242,
        "ppid": 1,
        "parent_path": "/bin/bash",
        "user": "root",
        "uid": 0,
        "cmdline": "/tmp/evil --now",
        "details": {"why": "test"},
    }
    event.update(overrides)
    return event


def checkin_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hostname": "web-01",
        "os": "linux",
        "os_version": "6.1",
        "agent_version": "0.1.0",
        "ips": ["10.0.0.5"],
        "modules": [
            {
                "name": "malware",
                "enabled": True,
                "mode": "prevention",
                "mechanism": "fanotify",
                "healthy": True,
                "detail": "",
            }
        ],
        "footprint": {"rss_bytes": 20_000_000, "cpu_percent": 0.05, "disk_bytes": 1000},
        "policy_version": None,
        "outbox_depth": 0,
        "events_dropped": 0,
    }
    body.update(overrides)
    return body


class Esm:
    """The live server of one test, its superuser client, and direct database access."""

    def __init__(self, url: str, settings: Any, admin: AdminClient, engine: Engine) -> None:
        self.url = url
        self.settings = settings
        self.admin = admin
        self.engine = engine
        self._clients: list[AdminClient | AgentClient] = []

    # --- clients ------------------------------------------------------------------------
    def token(self, **options: Any) -> str:
        token: str = self.admin.create_token(**options)["token"]
        return token

    def enroll(self, hostname: str = "web-01", token: str | None = None) -> AgentClient:
        reply = enroll(
            [self.url],
            {
                "token": token or self.token(),
                "hostname": hostname,
                "os": "linux",
                "os_version": "6.1",
                "agent_version": "0.1.0",
            },
        )
        client = AgentClient([self.url], reply["agent_id"], reply["agent_secret"])
        client.secret = reply["agent_secret"]
        self._clients.append(client)
        return client

    def user(self, role: str = "viewer", name: str | None = None) -> AdminClient:
        from esmd.setup import create_user
        from trapsapi.enums import Role

        name = name or f"{role}-{uuid.uuid4().hex[:6]}"
        assert create_user(self.settings, name, PASSWORD, Role(role))
        client = AdminClient(self.url)
        client.login(name, PASSWORD)
        self._clients.append(client)
        return client

    def anonymous(self, token: str | None = None) -> AdminClient:
        client = AdminClient(self.url, token=token)
        self._clients.append(client)
        return client

    # --- raw HTTP -----------------------------------------------------------------------
    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
        send = {"Content-Type": "application/json"} if body is not None else {}
        send.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=send)
            response = conn.getresponse()
            return Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            conn.close()

    def admin_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin.token}"}

    @staticmethod
    def agent_header(agent: AgentClient) -> dict[str, str]:
        return {"Authorization": f"Bearer {agent.agent_id}.{agent.secret}"}

    # --- database -----------------------------------------------------------------------
    def sql(self, statement: str, **params: Any) -> Any:
        with self.engine.begin() as connection:
            return connection.execute(text(statement), params)

    def count(self, table: str) -> int:
        from esmd.db import tables, tables_actions

        model = {
            "events": tables.EVENTS,
            "agents": tables.AGENTS,
            "hash_verdicts": tables.HASH_VERDICTS,
            "enrollment_tokens": tables.ENROLLMENT_TOKENS,
            "users": tables.USERS,
            "audit_log": tables.AUDIT_LOG,
            "admin_sessions": tables.ADMIN_SESSIONS,
            "actions": tables_actions.ACTIONS,
            "action_agents": tables_actions.ACTION_AGENTS,
            "action_blobs": tables_actions.ACTION_BLOBS,
            "forensic_bundles": tables.FORENSIC_BUNDLES,
        }[table]
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(model)).scalar_one())

    def snapshot(self) -> dict[str, int]:
        """Row counts of every table that a request could change."""
        names = ["events", "agents", "hash_verdicts", "enrollment_tokens", "users", "audit_log"]
        names += ["actions", "action_agents", "action_blobs", "forensic_bundles"]
        return {name: self.count(name) for name in names}

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.engine.dispose()

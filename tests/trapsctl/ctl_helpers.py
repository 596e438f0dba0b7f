"""Helpers shared by the trapsctl tests: keyrings, running the CLI, golden files, sample replies."""

from __future__ import annotations

import os
from pathlib import Path

import keyring.backend
import keyring.errors
import pytest
from typer.testing import CliRunner, Result

from trapsctl.cli import app

GOLDEN = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("TRAPS_UPDATE_GOLDEN") == "1"


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that keeps secrets in a dict: what a working OS keyring looks like to us."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


class LockedKeyring(MemoryKeyring):
    """A keyring that looks usable but refuses writes (a locked Secret Service collection)."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError("the collection is locked")


def run_cli(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Run trapsctl in-process, as a user would type it (stdout and stderr kept apart)."""
    return CliRunner().invoke(app, list(args), input=input, env=env, prog_name="trapsctl")


def assert_golden(name: str, text: str) -> None:
    """Compare with tests/trapsctl/golden/<name>; TRAPS_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / name
    if UPDATE_GOLDEN or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if not UPDATE_GOLDEN:
            pytest.fail(f"golden file {path.name} was missing and has been written; rerun")
    assert text == path.read_text(encoding="utf-8"), f"output differs from golden/{name}"


# --- fixed server replies (the shapes of trapsapi.models), for the output tests ---------------

MODULE_MALWARE = {
    "name": "malware",
    "enabled": True,
    "mode": "prevention",
    "mechanism": "fanotify",
    "healthy": True,
    "detail": "",
}
AGENT = {
    "agent_id": "a1b2c3d4-0000-4000-8000-000000000001",
    "hostname": "web-01",
    "os": "linux",
    "os_version": "Debian 13",
    "agent_version": "0.1.0",
    "ips": ["10.0.0.11", "fe80::1"],
    "enrolled_at": "2026-11-29T08:00:00Z",
    "last_checkin_at": "2026-11-29T09:30:05.123456+00:00",
    "health": "connected",
    "status": "protected",
    "modules": [
        MODULE_MALWARE,
        {
            "name": "restrictions",
            "enabled": False,
            "mode": "notification",
            "mechanism": "psutil-poll",
            "healthy": False,
            "detail": "not root",
        },
    ],
    "footprint": {"rss_bytes": 24117248, "cpu_percent": 0.04, "disk_bytes": 1048576},
    "policy_version": 3,
    "outbox_depth": 0,
    "events_dropped": 0,
}
SILENT_AGENT = {
    **AGENT,
    "agent_id": "a1b2c3d4-0000-4000-8000-000000000002",
    "hostname": "db-02",
    "health": "disconnected",
    "status": "unprotected",
    "last_checkin_at": None,
    "modules": [],
    "footprint": None,
    "policy_version": None,
}
SHA = "3f" * 32
EVENT = {
    "id": "e0000000-0000-4000-8000-000000000001",
    "agent_id": AGENT["agent_id"],
    "hostname": "web-01",
    "time": "2026-11-29T09:31:00+01:00",
    "received_at": "2026-11-29T08:31:01Z",
    "module": "malware",
    "severity": "high",
    "action": "prevented",
    "process_path": "/tmp/evil-sleep",
    "sha256": SHA,
    "pid": 4242,
    "ppid": 1000,
    "parent_path": "/usr/bin/bash",
    "user": "alice",
    "uid": 1000,
    "cmdline": "/tmp/evil-sleep 5",
    "details": {},
}
HOSTILE_EVENT = {
    **EVENT,
    "id": "e0000000-0000-4000-8000-000000000002",
    "severity": "critical",
    "action": "killed",
    "process_path": "/tmp/\x1b[2J\x1b]0;owned\x07[red]x[/red]",
    "sha256": None,
    "user": None,
}
VERDICT = {
    "sha256": SHA,
    "verdict": "malware",
    "source": "admin",
    "comment": "make demo test binary",
    "updated_at": "2026-11-29T08:15:00Z",
    "updated_by": "admin",
}
TOKEN = {
    "id": "tok_1",
    "label": "web servers",
    "created_at": "2026-11-29T08:00:00Z",
    "expires_at": "2099-01-01T00:00:00Z",
    "max_uses": 10,
    "uses": 2,
    "revoked": False,
    "created_by": "admin",
    "token": None,
}
SAMPLES: dict[str, object] = {
    "agents": {"data": [AGENT, SILENT_AGENT], "count": 2},
    "agent": AGENT,
    "events": {"data": [EVENT, HOSTILE_EVENT], "count": 7},
    "hashes": {"data": [VERDICT], "count": 1},
    "verdict": VERDICT,
    "tokens": {
        "data": [
            TOKEN,
            {**TOKEN, "id": "tok_2", "label": "", "revoked": True},
            {**TOKEN, "id": "tok_3", "label": "old", "expires_at": "2000-01-01T00:00:00Z"},
            {**TOKEN, "id": "tok_4", "label": "done", "uses": 10},
        ],
        "count": 4,
    },
    "new_token": {**TOKEN, "uses": 0, "token": "tps_enroll_SECRET"},
    "whoami": {"username": "admin", "role": "superuser"},
}

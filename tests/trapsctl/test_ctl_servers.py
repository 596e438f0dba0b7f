"""``trapsctl servers list`` against a real esmd."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ctl_helpers import run_cli

from trapsapi.admin_client import AdminClient


@pytest.fixture
def as_admin(admin: AdminClient, monkeypatch: pytest.MonkeyPatch) -> AdminClient:
    monkeypatch.setenv("TRAPSCTL_SERVER", admin.server)
    monkeypatch.setenv("TRAPSCTL_TOKEN", admin.token or "")
    return admin


def test_servers_list_as_json_and_table(as_admin: AdminClient, live_esm: Any) -> None:
    result = run_cli("servers", "list", "-o", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    [server] = rows if isinstance(rows, list) else rows["data"]
    assert server["address"] == live_esm.url and server["alive"] is True
    table = run_cli("servers", "list", "-o", "table")
    assert table.exit_code == 0, table.output
    assert "ADDRESS" in table.stdout and "alive" in table.stdout
    assert live_esm.url.split("//")[1] in table.stdout.replace("\n", "")


def test_servers_list_refuses_a_bad_output_format(as_admin: AdminClient) -> None:
    result = run_cli("servers", "list", "-o", "xml")
    assert result.exit_code == 2
    assert "xml" in result.output

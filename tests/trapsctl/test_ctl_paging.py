"""``--all`` on the list verbs walks the server's cursor (a real esmd, in-process); without
it one page is shown and the table says how to see more, the count capped or not."""

from __future__ import annotations

import pytest
from ctl_helpers import run_cli
from test_ctl_live import as_admin, cli_json, enrolled_agent, security_event

from esmd.services import paging
from trapsapi.admin_client import AdminClient

__all__ = ["as_admin"]  # the fixture, re-exported for this module's tests


def test_list_all_walks_every_page(as_admin: AdminClient, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = enrolled_agent(as_admin)
    events = [security_event(("high", "low")[i % 2]) for i in range(23)]
    agent.upload_events(events)
    for i in range(4):
        enrolled_agent(as_admin, f"db-{i}")
    listed = cli_json("events", "list", "--all", "--limit", "5")
    assert sorted(e["id"] for e in listed) == sorted(e["id"] for e in events)
    high = cli_json("events", "list", "--all", "--limit", "3", "--severity", "high")
    assert len(high) == 12 and {e["severity"] for e in high} == {"high"}
    assert len(cli_json("agents", "list", "--all", "--limit", "2")) == 5
    assert len(cli_json("audit", "list", "--all", "--limit", "2")) == len(
        list(AdminClient.rows(as_admin.list_audit, limit=1000))
    )
    assert cli_json("actions", "list", "--all") == []
    monkeypatch.setattr(paging, "COUNT_CAP", 10)
    table = run_cli("events", "list", "--limit", "4")
    assert table.exit_code == 0
    assert "Showing 4 of more than 10 events; use --limit or --all" in table.stderr

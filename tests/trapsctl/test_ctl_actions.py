"""``trapsctl actions``, ``agents isolate|unisolate`` and ``quarantine`` against a real esmd."""

from __future__ import annotations

import json
from typing import Any

from ctl_helpers import run_cli
from test_ctl_live import as_admin, cli_json, enrolled_agent

from trapsapi.admin_client import AdminClient

__all__ = ["as_admin"]  # the fixture, used by name


def test_actions_create_list_show_cancel(as_admin: AdminClient) -> None:
    enrolled_agent(as_admin, "web-7")
    db = enrolled_agent(as_admin, "db-7")
    created = cli_json(
        "actions",
        "create",
        "scan",
        "--query",
        "hostname=web-*",
        "-p",
        "paths=/usr/bin,/opt",
        "-p",
        "max_files=50",
        "--expires",
        "2h",
    )
    assert (
        created["params"]["paths"] == ["/usr/bin", "/opt"] and created["params"]["max_files"] == 50
    )
    assert [d["hostname"] for d in created["deliveries"]] == ["web-7"]
    isolate = cli_json("agents", "isolate", db.agent_id, "--grace", "5m")
    assert (isolate["type"], isolate["params"]) == ("isolate", {"grace_s": 300})
    assert cli_json("agents", "unisolate", db.agent_id)["type"] == "unisolate"

    listed = run_cli("actions", "list")
    assert listed.exit_code == 0 and "1 pending" in listed.stdout and "unisolate" in listed.stdout
    assert [a["type"] for a in cli_json("actions", "list", "--agent", db.agent_id)] == [
        "unisolate",
        "isolate",
    ]
    shown = run_cli("actions", "show", created["id"])
    assert shown.exit_code == 0 and "web-7" in shown.stdout and "pending" in shown.stdout

    cancelled = cli_json("actions", "cancel", created["id"])
    assert cancelled["cancelled"] and cancelled["progress"] == {"cancelled": 1}
    again = run_cli("actions", "cancel", created["id"])
    assert again.exit_code == 1 and again.stderr.startswith("error: ") and "already" in again.stderr
    missing = run_cli("actions", "show", "0" * 32)
    assert missing.exit_code == 5 and missing.stderr.count("\n") == 1


def test_actions_bad_input_is_one_line_and_exit_2_or_1(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin, "bad-7")
    before = as_admin.list_actions()["count"]
    for args, code, words in (
        (["actions", "create", "scan"], 2, "exactly one of"),
        (["actions", "create", "scan", "--agent", agent.agent_id, "-p", "oops"], 2, "KEY=VALUE"),
        (["actions", "create", "nuke", "--agent", agent.agent_id], 2, "nuke"),
        (["actions", "create", "checkin", "--query", "colour=red"], 2, "colour"),
        (
            ["actions", "create", "checkin", "--agent", agent.agent_id, "--expires", "soon"],
            2,
            "soon",
        ),
        (["actions", "create", "scan", "--agent", agent.agent_id], 1, "params.paths"),
        (["actions", "create", "checkin", "--agent", "nobody"], 5, "nobody"),
        (["quarantine", "restore", "a" * 32], 5, "no quarantined file"),
    ):
        result = run_cli(*args)
        assert result.exit_code == code, (args, result.output)
        assert words in result.stderr, (args, result.stderr)
    assert as_admin.list_actions()["count"] == before


def test_quarantine_list_and_restore(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin, "q-7")
    action = as_admin.create_action("quarantine", {"agent_id": agent.agent_id}, {"path": "/tmp/x"})
    reply: dict[str, Any] = agent.checkin(
        {
            "hostname": "q-7",
            "os": "linux",
            "os_version": "t",
            "agent_version": "0.1.0",
            "ips": [],
            "modules": [],
            "footprint": None,
            "policy_version": None,
            "outbox_depth": 0,
            "events_dropped": 0,
        }
    )
    assert [a["id"] for a in reply["actions"]] == [action["id"]]
    item = {"id": "c" * 32, "path": "/tmp/x", "sha256": "d" * 64, "time": "2026-11-29T09:00:00Z"}
    agent.report_action(
        action["id"], {"state": "succeeded", "result": {"quarantined": [item]}, "detail": ""}
    )
    table = run_cli("quarantine", "list")
    assert table.exit_code == 0 and "/tmp/x" in table.stdout and "q-7" in table.stdout
    restore = cli_json("quarantine", "restore", "c" * 32)
    assert (restore["type"], restore["params"]) == ("restore", {"quarantine_id": "c" * 32})
    assert restore["deliveries"][0]["agent_id"] == agent.agent_id
    assert json.loads(run_cli("quarantine", "list", "-o", "json").stdout)[0]["path"] == "/tmp/x"

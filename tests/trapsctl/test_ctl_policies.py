"""trapsctl policies and agents label/group/explain against a real esmd (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from ctl_helpers import run_cli

from trapsapi.admin_client import AdminClient
from trapsapi.agent_client import enroll

REPO = Path(__file__).resolve().parents[2]

FILE = """\
policies:
  - name: servers
    priority: 10
    targets:
      include: {labels: [server]}
      exclude: {hostnames: ["canary-*"]}
    rules:
      restrictions: {mode: prevention}
---
name: db-exception
priority: 10
targets:
  include: {hostnames: [db-01]}
rules:
  child_process:
    allow_pairs: ["postgres:sh"]
"""


@pytest.fixture
def as_admin(admin: AdminClient, monkeypatch: pytest.MonkeyPatch) -> AdminClient:
    monkeypatch.setenv("TRAPSCTL_SERVER", admin.server)
    monkeypatch.setenv("TRAPSCTL_TOKEN", admin.token or "")
    return admin


def cli_json(*args: str) -> Any:
    result = run_cli(*args, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _write(tmp_path: Path, text: str, name: str = "p.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_apply_diff_export_roundtrip_and_history(as_admin: AdminClient, tmp_path: Path) -> None:
    path = _write(tmp_path, FILE)
    diff = run_cli("policies", "diff", "-f", path, "--exit-code")
    assert diff.exit_code == 1
    assert "+++ file/servers" in diff.stdout and "+      mode: prevention" in diff.stdout
    assert cli_json("policies", "diff", "-f", path)[0]["action"] == "created"

    applied = cli_json("policies", "apply", "-f", path)
    assert [c["action"] for c in applied["changes"]] == ["created", "created"]
    assert run_cli("policies", "diff", "-f", path, "--exit-code").exit_code == 0
    names = [p["name"] for p in cli_json("policies", "list")]
    assert names == ["db-exception", "default", "servers"]
    assert "servers" in run_cli("policies", "list").stdout

    exported = run_cli("policies", "export").stdout
    assert yaml.safe_load(exported)["policies"][2]["targets"]["exclude"] == {
        "hostnames": ["canary-*"]
    }
    # What export prints applies back unchanged.
    again = cli_json("policies", "apply", "-f", _write(tmp_path, exported, "all.yaml"))
    assert {c["action"] for c in again["changes"]} == {"unchanged"}
    one = yaml.safe_load(run_cli("policies", "export", "servers").stdout)
    assert [p["name"] for p in one["policies"]] == ["servers"]
    shown = run_cli("policies", "show", "servers").stdout
    assert "PRIORITY" in shown and "mode: prevention" in shown

    changed = FILE.replace("mode: prevention", "mode: notification")
    diff = run_cli("policies", "diff", "-f", _write(tmp_path, changed, "c.yaml"))
    assert "-      mode: prevention\n+      mode: notification" in diff.stdout
    assert run_cli("policies", "delete", "db-exception").exit_code == 0
    assert run_cli("policies", "delete", "db-exception").exit_code == 5
    history = cli_json("policies", "history")
    assert [h["action"] for h in history] == ["delete", "apply", "init"]
    assert "delete" in run_cli("policies", "history").stdout


@pytest.mark.parametrize(
    ("text", "message", "code"),
    [
        (
            "policies:\n  - name: x\n    targets: {include: {all: true}}\n"
            "    rules: {child_process: {mode: block}}\n",
            "policies[0].rules.child_process.mode: must be one of prevention, notification, off",
            2,
        ),
        (
            "policies: [\n",
            "line 2, column 1: expected the node content, but found '<stream end>'",
            2,
        ),
        ("- 1\n- 2\n", "document 1 must be a policy or a 'policies' list", 2),
        ("policies: []\nextra: 1\n", "extra: unknown field (next to 'policies')", 2),
    ],
)
def test_bad_files_are_one_line_and_change_nothing(
    as_admin: AdminClient, tmp_path: Path, text: str, message: str, code: int
) -> None:
    path = _write(tmp_path, text)
    before = as_admin.policy_history()["count"]
    result = run_cli("policies", "apply", "-f", path)
    assert result.exit_code == code
    assert result.stderr == f"error: {path}: {message}\n"
    assert as_admin.policy_history()["count"] == before
    missing = run_cli("policies", "apply", "-f", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr


def test_label_group_and_explain(as_admin: AdminClient, tmp_path: Path) -> None:
    token = as_admin.create_token(label="t")["token"]
    identity = enroll(
        [as_admin.server],
        {
            "token": token,
            "hostname": "app-01",
            "os": "linux",
            "os_version": "test",
            "agent_version": "0.1.0",
        },
    )
    agent_id = identity["agent_id"]
    run_cli("policies", "apply", "-f", _write(tmp_path, FILE))
    labelled = cli_json("agents", "label", agent_id, "--add", "server", "--add", "web")
    assert labelled["labels"] == ["server", "web"]
    assert cli_json("agents", "label", agent_id, "--remove", "web")["labels"] == ["server"]
    assert run_cli("agents", "label", agent_id).exit_code == 2
    assert cli_json("agents", "group", agent_id, "dc1")["group"] == "dc1"
    assert cli_json("agents", "group", agent_id, "--clear")["group"] is None
    bad = run_cli("agents", "label", agent_id, "--add", "no spaces")
    assert bad.exit_code == 1 and bad.stderr.startswith("error: labels.0: String should match")
    assert bad.stderr.count("\n") == 1
    assert cli_json("agents", "show", agent_id)["labels"] == ["server"]  # nothing changed

    explained = cli_json("agents", "explain", agent_id)
    winner = next(s for s in explained["settings"] if s["setting"] == "restrictions.mode")
    assert (winner["policy"], winner["value"]) == ("servers", "prevention")
    assert winner["losers"][0]["policy"] == "default"
    table = run_cli("agents", "explain", agent_id).stdout
    assert "Matching policies" in table and "label 'server'" in table
    # Unset by every policy: the server's own heartbeat, shown as the built-in value.
    heartbeat = next(
        s for s in explained["settings"] if s["setting"] == "agent.heartbeat_interval_s"
    )
    assert (
        heartbeat["policy"] is None
        and heartbeat["value"] == explained["effective"]["heartbeat_interval_s"]
    )
    assert "(built-in)" in table
    shown = cli_json("agents", "show", agent_id)
    assert shown["labels"] == ["server"] and shown["policy_drift"] is False


def test_shipped_policy_files_are_valid_and_default_is_what_init_creates() -> None:
    from esmd.services.policy_defaults import DEFAULT_POLICY
    from trapsapi.models_policies import parse_policy_file
    from trapsctl.policyfile import load_file

    default = load_file(str(REPO / "policies" / "default.yaml"))
    assert default["policies"] == [DEFAULT_POLICY]
    for path in sorted((REPO / "policies").rglob("*.yaml")):
        parse_policy_file(load_file(str(path)))


def test_a_viewer_may_diff_but_not_apply(
    admin: AdminClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.create_user("vera", "viewer password 1", "viewer")
    viewer = AdminClient(admin.server)
    viewer.login("vera", "viewer password 1")
    monkeypatch.setenv("TRAPSCTL_SERVER", admin.server)
    monkeypatch.setenv("TRAPSCTL_TOKEN", viewer.token or "")
    path = _write(tmp_path, FILE)
    diff = run_cli("policies", "diff", "-f", path, "--exit-code")
    assert diff.exit_code == 1 and "+++ file/servers" in diff.stdout
    refused = run_cli("policies", "apply", "-f", path)
    assert refused.exit_code == 4 and "policies:write" in refused.stderr
    assert refused.stdout == ""
    assert [p["name"] for p in admin.list_policies()["data"]] == ["default"]
    viewer.close()

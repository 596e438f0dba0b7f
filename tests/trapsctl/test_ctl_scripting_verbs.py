"""The verbs scripts need beyond the basics: api-tokens (create, list, revoke), events ack
(pipes of IDs), against a real esmd; their table and JSON output against golden files."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from ctl_helpers import assert_golden, run_cli
from test_ctl_live import as_admin, cli_json, enrolled_agent, security_event

from trapsapi.admin_client import AdminClient

__all__ = ["as_admin"]  # the fixture, re-exported for this module's tests

API_TOKENS = {
    "data": [
        {
            "id": "3f9c2a1e",
            "name": "nightly export",
            "username": "reporter",
            "created_at": "2026-11-29T08:00:00Z",
            "created_by": "admin",
            "expires_at": None,
            "revoked": False,
            "last_used_at": "2026-11-29T09:30:00Z",
            "token": None,
        },
        {
            "id": "77aa01bc",
            "name": "old ci",
            "username": "ci",
            "created_at": "2026-10-01T08:00:00Z",
            "created_by": "admin",
            "expires_at": "2026-11-01T08:00:00Z",
            "revoked": True,
            "last_used_at": None,
            "token": None,
        },
    ],
    "count": 2,
}


class FixedReplies:
    """Stands in for AdminClient in the golden tests: fixed replies, calls recorded."""

    calls: list[tuple[str, Any]] = []

    def __init__(self, server: str, token: str | None = None, *args: Any) -> None:
        self.server = server

    def list_api_tokens(self, **filters: Any) -> Any:
        FixedReplies.calls.append(("list_api_tokens", filters))
        return json.loads(json.dumps(API_TOKENS))

    def close(self) -> None:
        pass


@pytest.fixture
def fixed_replies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    import trapsapi.admin_client

    FixedReplies.calls = []
    monkeypatch.setattr(trapsapi.admin_client, "AdminClient", FixedReplies)
    monkeypatch.setenv("TRAPSCTL_SERVER", "https://esm.example.org:2125")
    monkeypatch.setenv("TRAPSCTL_TOKEN", "tps_admin_TOKEN")
    return FixedReplies.calls


def test_api_tokens_list_golden_table_json_csv(fixed_replies: list[tuple[str, Any]]) -> None:
    table = run_cli("api-tokens", "list")
    assert table.exit_code == 0, table.output
    assert_golden("api_tokens_list.txt", table.stdout)
    data = run_cli("api-tokens", "list", "-o", "json", "--limit", "5")
    assert_golden("api_tokens_list.json", data.stdout)
    assert json.loads(data.stdout) == API_TOKENS["data"]
    assert fixed_replies[-1] == ("list_api_tokens", {"limit": 5})
    assert_golden("api_tokens_list.csv", run_cli("api-tokens", "list", "-o", "csv").stdout)
    assert run_cli("api-tokens", "list", "-q").stdout == "3f9c2a1e\n77aa01bc\n"


def test_api_tokens_create_use_revoke(as_admin: AdminClient) -> None:
    as_admin.create_user("reporter", "a long password one", "viewer")
    created = run_cli("api-tokens", "create", "nightly export", "--user", "reporter")
    assert created.exit_code == 0, created.output
    assert "shown only now" in created.stderr and "TRAPSCTL_TOKEN" in created.stderr
    made = cli_json("api-tokens", "create", "second", "--user", "reporter", "--expires-in", "30d")
    assert made["token"] and made["expires_at"] and made["username"] == "reporter"
    listed = cli_json("api-tokens", "list")
    assert [t["name"] for t in listed] == ["second", "nightly export"]
    assert all(t["token"] is None for t in listed)  # the secret is never shown again

    as_script = {"TRAPSCTL_TOKEN": made["token"]}
    whoami = run_cli("whoami", "-o", "json", env=as_script)
    assert json.loads(whoami.stdout)["username"] == "reporter"
    denied = run_cli("api-tokens", "list", env=as_script)  # a viewer: superusers only
    assert denied.exit_code == 4 and denied.stdout == ""
    revoked = run_cli("api-tokens", "revoke", made["id"])
    assert (revoked.exit_code, revoked.stdout) == (0, "")
    refused = run_cli("whoami", env=as_script)
    assert refused.exit_code == 4 and refused.stderr.count("\n") == 1
    assert "check TRAPSCTL_TOKEN" in refused.stderr and made["token"] not in refused.stderr
    states = {t["name"]: t["revoked"] for t in cli_json("api-tokens", "list")}
    assert states == {"second": True, "nightly export": False}

    assert run_cli("api-tokens", "revoke", "no-such-token").exit_code == 5
    bad = run_cli("api-tokens", "create", "x", "--user", "reporter", "--expires-in", "10s")
    assert bad.exit_code == 2 and "between 60 s and 3650 d" in bad.stderr
    assert run_cli("api-tokens", "create", "x").exit_code == 2  # --user is required
    nobody = run_cli("api-tokens", "create", "x", "--user", "nobody")
    assert nobody.exit_code in (1, 5) and nobody.stderr.startswith("error: ")
    assert len(cli_json("api-tokens", "list")) == 2  # the failures created nothing


def test_events_ack_takes_ids_from_a_pipe(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin)
    events = [security_event("high"), security_event("critical"), security_event("low")]
    agent.upload_events(events)
    ids = run_cli("events", "list", "--severity", "high", "-q").stdout.split()
    assert sorted(ids) == sorted(e["id"] for e in events[:2])
    acked = cli_json("events", "ack", *ids, "-m", "on it")
    assert [(e["status"], e["assignee"], e["comment"]) for e in acked] == [
        ("in_progress", "admin", "on it")
    ] * 2
    assert sorted(run_cli("events", "list", "--status", "in_progress", "-q").stdout.split()) == (
        sorted(ids)
    )
    table = run_cli("events", "ack", events[2]["id"], "--assignee", "")
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[0].split() == ["EVENT", "ID", "STATUS", "ASSIGNEE", "COMMENT"]
    assert run_cli("events", "ack", events[2]["id"], "-q").stdout == f"{events[2]['id']}\n"
    missing = run_cli("events", "ack", str(uuid.uuid4()))
    assert missing.exit_code == 5 and missing.stderr.startswith("error: no event")
    assert run_cli("events", "ack").exit_code == 2  # no ID


def _on_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run trapsctl with stdout on a pseudo-terminal (as a person sees it), stderr piped."""
    import os
    import pty
    import subprocess

    from test_ctl_live import TRAPSCTL

    primary, secondary = pty.openpty()
    try:
        process = subprocess.run(
            [TRAPSCTL, *args],
            stdout=secondary,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=30,
        )
        os.close(secondary)
        secondary = -1
        chunks = []
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    return process.returncode, b"".join(chunks).decode(), process.stderr


def test_colour_only_on_a_terminal_without_no_color(as_admin: AdminClient) -> None:
    import os
    import subprocess

    from test_ctl_live import TRAPSCTL

    enrolled_agent(as_admin, "web-01")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="160")
    code, coloured, errors = _on_a_terminal(["agents", "list"], env)
    assert (code, errors) == (0, "")
    assert "\x1b[" in coloured and "web-01" in coloured  # health and status in colour
    code, plain, _ = _on_a_terminal(["agents", "list"], {**env, "NO_COLOR": "1"})
    assert code == 0 and "web-01" in plain and "\x1b" not in plain
    code, dumb, _ = _on_a_terminal(["agents", "list"], {**env, "TERM": "dumb"})
    assert code == 0 and "web-01" in dumb and "\x1b" not in dumb
    piped = subprocess.run(
        [TRAPSCTL, "agents", "list"], env=env, capture_output=True, text=True, timeout=30
    )
    assert piped.returncode == 0 and "web-01" in piped.stdout and "\x1b" not in piped.stdout
    # Diagnostics never reach stdout: a page shorter than the total says so on stderr.
    enrolled_agent(as_admin, "web-02")
    limited = subprocess.run(
        [TRAPSCTL, "agents", "list", "--limit", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert limited.stdout.count("web-0") == 1
    assert limited.stderr.startswith("Showing 1 of 2 agents; use --limit")
    assert limited.stderr.count("\n") == 1


def test_no_option_or_argument_takes_a_secret_on_the_command_line() -> None:
    """Passwords and tokens come from a prompt, stdin or the environment, never from argv."""
    import typer
    import typer._click as click
    from typer.core import TyperGroup

    from trapsctl.cli import app

    def walk(command: Any, path: str) -> Iterator[tuple[str, Any]]:
        yield path, command
        if isinstance(command, TyperGroup):
            context = click.Context(command)
            for name in command.list_commands(context):
                yield from walk(command.get_command(context, name), f"{path} {name}")

    secret_words = ("password", "token", "secret")
    checked = 0
    for path, command in walk(typer.main.get_command(app), "trapsctl"):
        for param in command.params:
            names = " ".join([param.name or "", *getattr(param, "opts", [])]).lower()
            if (param.name or "").endswith("_id"):
                continue  # the ID of a token is no secret
            if any(word in names for word in secret_words):
                checked += 1
                assert getattr(param, "is_flag", False), f"{path}: {names} takes a value"
    assert checked >= 2  # login and users create have --password-stdin


def test_every_list_verb_takes_quiet_and_no_headers(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin, "web-01")
    as_admin.import_hashes("intel", [{"sha256": "ab" * 32}])
    action = cli_json("agents", "isolate", agent.agent_id)
    server_id = cli_json("servers", "list")[0]["id"]
    expected = {
        ("servers", "list"): [server_id],
        ("policies", "list"): ["default"],
        ("policies", "history"): [str(h["version"]) for h in cli_json("policies", "history")],
        ("actions", "list"): [action["id"]],
        ("quarantine", "list"): [],
        ("hashes", "feeds"): ["intel"],
    }
    for args, ids in expected.items():
        quiet = run_cli(*args, "-q")
        assert (quiet.exit_code, quiet.stdout.split()) == (0, ids), args
        table = [line.split()[0] for line in run_cli(*args).stdout.splitlines()]
        bare = [line.split()[0] for line in run_cli(*args, "--no-headers").stdout.splitlines()]
        assert bare == table[1:], args  # the same rows (as narrow as the data), no header


def test_verbose_names_the_failed_request_and_quiet_stays_one_line(as_admin: AdminClient) -> None:
    as_admin.create_user("vic", "a long password one", "viewer")
    viewer = AdminClient(as_admin.server)
    viewer.login("vic", "a long password one")
    as_viewer = {"TRAPSCTL_TOKEN": viewer.token or ""}
    plain = run_cli("api-tokens", "list", env=as_viewer)
    assert plain.exit_code == 4 and plain.stderr.count("\n") == 1
    assert plain.stderr.startswith("error: ") and plain.stdout == ""
    loud = run_cli("-v", "api-tokens", "list", env=as_viewer)
    assert loud.exit_code == 4 and loud.stdout == ""
    detail = (
        f"detail: GET /api/v1/api-tokens at {as_admin.server}: HTTP 403; token from TRAPSCTL_TOKEN"
    )
    assert detail in loud.stderr
    assert "Traceback" in loud.stderr and loud.stderr.endswith(plain.stderr)
    assert (viewer.token or "-") not in loud.stderr
    down = run_cli("-v", "agents", "list", env={"TRAPSCTL_SERVER": "http://127.0.0.1:9"})
    assert (
        down.exit_code == 3
        and "detail: GET /api/v1/agents at http://127.0.0.1:9: no answer" in (down.stderr)
    )
    viewer.close()

"""Output of every command against fixed server replies: JSON is the contract, tables are golden."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from ctl_helpers import AGENT, EVENT, HOSTILE_EVENT, SAMPLES, SHA, assert_golden, run_cli

from trapsctl.output import Column, printable, timestamp, write_table


class FakeAdminClient:
    """Stands in for trapsapi.admin_client.AdminClient; records every call."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, server: str, token: str | None = None, *args: Any) -> None:
        self.server, self.token = server, token

    def _reply(self, name: str, key: str, **kwargs: Any) -> Any:
        FakeAdminClient.calls.append((name, kwargs))
        return json.loads(json.dumps(SAMPLES[key]))  # a fresh copy, as if decoded from the wire

    def list_agents(self, **filters: Any) -> Any:
        return self._reply("list_agents", "agents", **filters)

    def get_agent(self, agent_id: str) -> Any:
        return self._reply("get_agent", "agent", agent_id=agent_id)

    def list_events(self, **filters: Any) -> Any:
        return self._reply("list_events", "events", **filters)

    def list_hashes(self, **filters: Any) -> Any:
        return self._reply("list_hashes", "hashes", **filters)

    def set_verdict(self, sha256: str, verdict: str, comment: str = "") -> Any:
        return self._reply("set_verdict", "verdict", sha256=sha256, verdict=verdict)

    def list_tokens(self) -> Any:
        return self._reply("list_tokens", "tokens")

    def create_token(self, **kwargs: Any) -> Any:
        return self._reply("create_token", "new_token", **kwargs)

    def whoami(self) -> Any:
        return self._reply("whoami", "whoami")

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fake_server(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    import trapsapi.admin_client

    FakeAdminClient.calls = []
    monkeypatch.setattr(trapsapi.admin_client, "AdminClient", FakeAdminClient)
    monkeypatch.setenv("TRAPSCTL_SERVER", "https://esm.example.org:2125")
    monkeypatch.setenv("TRAPSCTL_TOKEN", "tps_admin_TOKEN")
    return FakeAdminClient.calls


CASES = [
    ("agents_list", ["agents", "list"], "agents"),
    ("agents_show", ["agents", "show", AGENT["agent_id"]], "agent"),
    ("events_list", ["events", "list"], "events"),
    ("hashes_list", ["hashes", "list"], "hashes"),
    ("hashes_block", ["hashes", "block", SHA], "verdict"),
    ("tokens_list", ["tokens", "list"], "tokens"),
    ("tokens_create", ["tokens", "create", "--label", "web servers"], "new_token"),
    ("whoami", ["whoami"], "whoami"),
]


@pytest.mark.parametrize(("name", "args", "sample"), CASES, ids=[c[0] for c in CASES])
def test_json_is_the_servers_data(name: str, args: list[str], sample: str) -> None:
    result = run_cli(*args, "-o", "json")
    assert result.exit_code == 0, result.output
    reply: Any = SAMPLES[sample]
    expected = reply["data"] if isinstance(reply, dict) and "data" in reply else reply
    assert json.loads(result.stdout) == expected
    assert_golden(f"{name}.json", result.stdout)


@pytest.mark.parametrize(("name", "args", "sample"), CASES, ids=[c[0] for c in CASES])
def test_table_matches_golden(name: str, args: list[str], sample: str) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout  # not a terminal: no colour, no escape sequence at all
    assert_golden(f"{name}.txt", result.stdout)


def test_global_output_option_and_env_and_per_command_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert json.loads(run_cli("-o", "json", "agents", "list").stdout)[0]["hostname"] == "web-01"
    monkeypatch.setenv("TRAPSCTL_OUTPUT", "json")
    assert json.loads(run_cli("agents", "list").stdout)[1]["hostname"] == "db-02"
    assert run_cli("agents", "list", "-o", "table").stdout.startswith("AGENT ID")


def test_tokens_create_shows_the_secret_once_and_says_so() -> None:
    result = run_cli("tokens", "create")
    assert "tps_enroll_SECRET" in result.stdout
    assert "shown only now" in result.stderr


def test_diagnostics_go_to_stderr_not_stdout() -> None:
    result = run_cli("events", "list")
    assert "Showing 2 of 7 events" in result.stderr
    assert "Showing" not in result.stdout
    assert json.loads(run_cli("events", "list", "-o", "json").stdout)  # stdout stays pure JSON


def test_empty_list_prints_nothing_in_a_table_and_an_empty_array_in_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(SAMPLES, "agents", {"data": [], "count": 0})
    table = run_cli("agents", "list")
    assert (table.stdout, table.stderr) == ("", "No agents found.\n")
    assert run_cli("agents", "list", "-o", "json").stdout == "[]\n"


def test_escape_sequences_from_agents_cannot_reach_the_terminal() -> None:
    result = run_cli("events", "list")
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "/tmp/\\x1b[2J\\x1b]0;owned\\x07[red]x[/red]" in result.stdout  # shown, escaped
    assert json.loads(run_cli("events", "list", "-o", "json").stdout)[1] == HOSTILE_EVENT


def test_filters_reach_the_server(fake_server: list[tuple[str, dict[str, Any]]]) -> None:
    args = ["--agent", "a1", "--severity", "HIGH", "--module", "malware", "--limit", "5"]
    result = run_cli("events", "list", *args, "--since", "2026-11-29T08:00:00+01:00")
    assert result.exit_code == 0, result.output
    assert fake_server[-1] == (
        "list_events",
        {
            "agent_id": "a1",
            "severity": "high",
            "module": "malware",
            "since": "2026-11-29T07:00:00Z",
            "limit": 5,
        },
    )
    run_cli("agents", "list", "--health", "disconnected", "--hostname", "db-02")
    assert fake_server[-1] == (
        "list_agents",
        {"health": "disconnected", "hostname": "db-02", "limit": None},
    )
    run_cli("hashes", "block", SHA.upper())
    assert fake_server[-1] == ("set_verdict", {"sha256": SHA, "verdict": "malware"})
    run_cli("tokens", "create", "--expires-in", "1h30m", "--max-uses", "3")
    assert fake_server[-1] == ("create_token", {"label": "", "expires_in_s": 5400, "max_uses": 3})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_narrow_terminal_free_text_folds_and_no_cell_is_cut() -> None:
    columns = [
        Column("PROCESS", "process_path", wrap=True),
        Column("TIME", "time", timestamp),
        Column("SHA256", "sha256"),
    ]
    rows = [{**EVENT, "process_path": "/very/long/path/" * 4}]
    stream = Terminal()
    write_table(rows, columns, stream, width=120)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # header + the path folded over two lines
    assert lines[1].split()[1:] == ["2026-11-29", "08:31:00Z", SHA]

    too_narrow = Terminal()
    write_table(rows, columns, too_narrow, width=40)
    text = too_narrow.getvalue()
    assert SHA in text and "2026-11-29 08:31:00Z" in text  # wider than 40: the terminal wraps
    assert max(len(line) for line in text.splitlines()[1:]) == 16 + 2 + 20 + 2 + 64


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        (True, "yes"),
        (3, "3"),
        ("plain", "plain"),
        ("tab\there", "tab\\x09here"),
        ("bidi\u202eevil", "bidi\\u202eevil"),
    ],
)
def test_printable(value: object, shown: str) -> None:
    assert printable(value) == shown


def test_timestamps_are_shown_in_utc() -> None:
    assert timestamp("2026-11-29T09:31:00+01:00") == "2026-11-29 08:31:00Z"
    assert timestamp("2026-11-29T08:31:00") == "2026-11-29 08:31:00Z"
    assert timestamp(None) == "-"
    assert timestamp("yesterday") == "yesterday"

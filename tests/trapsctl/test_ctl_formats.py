"""Every output format of every list/show verb against fixed server replies (golden files):
JSON and YAML are the server's data, CSV the table's fields, ``-q`` the IDs, ``--no-headers``."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
import yaml
from ctl_helpers import AGENT, EVENT, SAMPLES, SHA, assert_golden, run_cli

USERS = {
    "data": [
        {"username": "admin", "role": "superuser", "created_at": "2026-11-29T08:00:00Z"},
        {"username": "eve", "role": "analyst", "created_at": "2026-11-29T08:05:00Z"},
    ],
    "count": 2,
}
AUDIT = {
    "data": [
        {
            "id": 7,
            "at": "2026-11-29T08:10:00Z",
            "actor": "admin",
            "action": "hash.set",
            "target": SHA,
            "source_ip": "127.0.0.1",
            "detail": {"verdict": "malware"},
        }
    ],
    "count": 1,
}
TREE_EVENT = {
    **EVENT,
    "status": "in_progress",
    "assignee": "eve",
    "comment": "seen",
    "details": {
        "rule": "no-tmp-exec",
        "forensics": "fx-42",
        "ancestors": [{"pid": 900, "path": "/usr/sbin/sshd"}, {"pid": 1, "path": "/sbin/init"}],
    },
}
REPLIES: dict[str, Any] = {
    **SAMPLES,
    "users": USERS,
    "audit": AUDIT,
    "event": TREE_EVENT,
    "version": {"esmd": "9.9.9", "api": "v1"},
    "report": {
        "sha256": SHA,
        "verdict": "malware",
        "source": "feed:intel",
        "sources": [
            {
                "source": "feed:intel",
                "verdict": "malware",
                "comment": "",
                "updated_at": "2026-11-29T08:00:00Z",
            }
        ],
        "sightings": [
            {
                "agent_id": "a1b2c3d4-0000-4000-8000-000000000001",
                "hostname": "web-01",
                "process_path": "/tmp/evil",
                "events": 7,
                "first_seen": "2026-11-29T07:00:00Z",
                "last_seen": "2026-11-29T08:00:00Z",
            }
        ],
    },
}


class FakeAdminClient:
    """Stands in for trapsapi.admin_client.AdminClient: fixed replies, every call recorded."""

    calls: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, server: str, token: str | None = None, *args: Any) -> None:
        self.server, self.token = server, token

    def _reply(self, name: str, key: str, **kwargs: Any) -> Any:
        FakeAdminClient.calls.append((name, kwargs))
        return json.loads(json.dumps(REPLIES[key]))

    def list_agents(self, **filters: Any) -> Any:
        return self._reply("list_agents", "agents", **filters)

    def get_agent(self, agent_id: str) -> Any:
        return self._reply("get_agent", "agent", agent_id=agent_id)

    def list_events(self, **filters: Any) -> Any:
        return self._reply("list_events", "events", **filters)

    def get_event(self, event_id: str, agent_id: str | None = None) -> Any:
        return self._reply("get_event", "event", event_id=event_id, agent_id=agent_id)

    def triage_event(self, event_id: str, **changes: Any) -> Any:
        return self._reply("triage_event", "event", event_id=event_id, **changes)

    def get_hash(self, sha256: str) -> Any:
        return self._reply("get_hash", "verdict", sha256=sha256)

    def hash_report(self, sha256: str) -> Any:
        return self._reply("hash_report", "report", sha256=sha256)

    def list_hashes(self, **filters: Any) -> Any:
        return self._reply("list_hashes", "hashes", **filters)

    def list_users(self, **filters: Any) -> Any:
        return self._reply("list_users", "users", **filters)

    def list_audit(self, **filters: Any) -> Any:
        return self._reply("list_audit", "audit", **filters)

    def list_tokens(self) -> Any:
        return self._reply("list_tokens", "tokens")

    def server_version(self) -> Any:
        return self._reply("server_version", "version")

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


LISTS = [
    ("agents_list", ["agents", "list"], "agents", "agent_id"),
    ("events_list", ["events", "list"], "events", "id"),
    ("hashes_list", ["hashes", "list"], "hashes", "sha256"),
    ("users_list", ["users", "list"], "users", "username"),
    ("audit_list", ["audit", "list"], "audit", "id"),
    ("tokens_list", ["tokens", "list"], "tokens", "id"),
]
IDS = [case[0] for case in LISTS]


@pytest.mark.parametrize(("name", "args", "sample", "id_key"), LISTS, ids=IDS)
def test_yaml_is_the_same_data_as_json(
    name: str, args: list[str], sample: str, id_key: str
) -> None:
    result = run_cli(*args, "-o", "yaml")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == json.loads(run_cli(*args, "-o", "json").stdout)
    assert_golden(f"{name}.yaml", result.stdout)


@pytest.mark.parametrize(("name", "args", "sample", "id_key"), LISTS, ids=IDS)
def test_csv_has_a_header_and_one_record_per_row(
    name: str, args: list[str], sample: str, id_key: str
) -> None:
    result = run_cli(*args, "-o", "csv")
    assert result.exit_code == 0, result.output
    records = list(csv.reader(io.StringIO(result.stdout)))
    assert len(records) == 1 + len(REPLIES[sample]["data"])
    assert_golden(f"{name}.csv", result.stdout)
    bare = run_cli(*args, "-o", "csv", "--no-headers")
    assert bare.stdout.splitlines() == result.stdout.splitlines()[1:]


@pytest.mark.parametrize(("name", "args", "sample", "id_key"), LISTS, ids=IDS)
def test_quiet_prints_the_ids_one_a_line(
    name: str, args: list[str], sample: str, id_key: str
) -> None:
    expected = "".join(f"{row[id_key]}\n" for row in REPLIES[sample]["data"])
    assert run_cli(*args, "-q").stdout == expected
    assert run_cli("-q", *args, "-o", "json").stdout == expected  # global -q wins over -o


def test_no_headers_drops_the_table_header_only() -> None:
    table = [line.split() for line in run_cli("agents", "list").stdout.splitlines()]
    assert table[0][:2] == ["AGENT", "ID"]
    for args in (["--no-headers", "agents", "list"], ["agents", "list", "--no-headers"]):
        bare = run_cli(*args).stdout.splitlines()
        assert [line.split() for line in bare] == table[1:]  # columns as narrow as the data


def test_csv_quotes_hostile_and_structured_values() -> None:
    records = list(csv.reader(io.StringIO(run_cli("events", "list", "-o", "csv").stdout)))
    assert records[0][:3] == ["time", "severity", "action"]
    assert records[2][5] == "/tmp/\x1b[2J\x1b]0;owned\x07[red]x[/red]"  # raw data, quoted
    audit = list(csv.reader(io.StringIO(run_cli("audit", "list", "-o", "csv").stdout)))
    assert json.loads(audit[1][6]) == {"verdict": "malware"}


SHOWS = [
    ("events_show", ["events", "show", EVENT["id"]], "event"),
    ("events_triage", ["events", "triage", EVENT["id"], "--status", "in_progress"], "event"),
    ("hashes_show", ["hashes", "show", SHA], "verdict"),
    ("version", ["version"], "version"),
]


@pytest.mark.parametrize(("name", "args", "sample"), SHOWS, ids=[c[0] for c in SHOWS])
def test_show_verbs_table_and_json_golden(name: str, args: list[str], sample: str) -> None:
    table = run_cli(*args)
    assert table.exit_code == 0, table.output
    assert_golden(f"{name}.txt", table.stdout)
    data = run_cli(*args, "-o", "json")
    assert data.exit_code == 0, data.output
    assert_golden(f"{name}.json", data.stdout)
    assert yaml.safe_load(run_cli(*args, "-o", "yaml").stdout) == json.loads(data.stdout)


def test_event_show_draws_the_process_tree_and_forensics() -> None:
    lines = run_cli("events", "show", EVENT["id"]).stdout.splitlines()
    tree = lines[lines.index("Process tree") + 2 :]
    assert [line.split()[0] for line in tree] == ["1", "900", "1000", "4242"]
    assert "         └─ /tmp/evil-sleep 5" in tree[-1]  # three levels deep
    assert any(line.startswith("FORENSICS") and "fx-42" in line for line in lines)


def test_hashes_show_combines_the_verdict_and_the_events(
    fake_server: list[tuple[str, dict[str, Any]]],
) -> None:
    shown = json.loads(run_cli("hashes", "show", SHA.upper(), "-o", "json").stdout)
    assert (shown["verdict"], shown["source"]) == ("malware", "feed:intel")
    assert shown["events_count"] == 7 and shown["sightings"][0]["hostname"] == "web-01"
    assert fake_server[-1] == ("list_events", {"sha256": SHA, "limit": 20})


def test_new_filters_and_triage_reach_the_server(
    fake_server: list[tuple[str, dict[str, Any]]],
) -> None:
    args = ["--status", "new", "--hostname", "web", "--assignee", "eve", "--limit", "3"]
    assert run_cli("events", "list", *args).exit_code == 0
    assert fake_server[-1] == (
        "list_events",
        {
            "agent_id": None,
            "severity": None,
            "module": None,
            "since": None,
            "limit": 3,
            "status": "new",
            "hostname": "web",
            "assignee": "eve",
        },
    )
    triage = ["events", "triage", EVENT["id"].upper(), "--assignee", "", "-m", "fp"]
    assert run_cli(*triage).exit_code == 0
    assert fake_server[-1] == (
        "triage_event",
        {
            "event_id": EVENT["id"],
            "status": None,
            "assignee": "",
            "comment": "fp",
            "agent_id": None,
        },
    )
    assert run_cli("audit", "list", "--actor", "eve", "--action", "user.").exit_code == 0
    assert fake_server[-1] == (
        "list_audit",
        {"actor": "eve", "action": "user.", "since": None, "limit": 100},
    )


def test_version_without_a_login_shows_the_client_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAPSCTL_SERVER")
    monkeypatch.delenv("TRAPSCTL_TOKEN")
    result = run_cli("version", "-o", "json")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"trapsctl", "api"}


def test_agent_show_quiet_prints_its_id() -> None:
    assert run_cli("agents", "show", AGENT["agent_id"], "-q").stdout == f"{AGENT['agent_id']}\n"


def test_csv_on_a_terminal_escapes_control_characters() -> None:
    from trapsctl.commands.events import EVENT_COLUMNS
    from trapsctl.output import write_csv

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    write_csv([REPLIES["events"]["data"][1]], EVENT_COLUMNS, stream)
    assert "\x1b" not in stream.getvalue() and "/tmp/\\x1b[2J" in stream.getvalue()

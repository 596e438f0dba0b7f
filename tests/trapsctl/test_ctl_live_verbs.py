"""The console's newer verbs against a real esmd: events show/triage/watch, agents --watch,
hashes show, users, audit, version and agent-ID completion."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from ctl_helpers import run_cli
from test_ctl_live import SHA, TRAPSCTL, as_admin, cli_json, enrolled_agent, security_event

from trapsapi.admin_client import AdminClient

__all__ = ["as_admin"]  # the fixture, re-exported for this module's tests
BIN = Path(sys.executable).parent


def _env(admin: AdminClient) -> dict[str, str]:
    return dict(os.environ, TRAPSCTL_SERVER=admin.server, TRAPSCTL_TOKEN=admin.token or "")


class Follower:
    """A ``trapsctl … watch`` process whose stdout lines are read with a deadline."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [TRAPSCTL, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.queue.put(line.rstrip("\n"))

    def lines(self, count: int, timeout: float = 20.0) -> list[str]:
        found: list[str] = []
        try:
            while len(found) < count:
                found.append(self.queue.get(timeout=timeout))
        except queue.Empty:
            raise AssertionError(f"got {found}, waited for {count} lines") from None
        return found

    def interrupt(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=20)
        assert self.process.stderr is not None
        return self.process.returncode, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.timeout(90)
def test_events_watch_follows_new_events_in_order_and_ctrl_c_exits_130(
    as_admin: AdminClient,
) -> None:
    agent = enrolled_agent(as_admin)
    old = [security_event("low"), security_event("high")]
    agent.upload_events(old)
    args = ["events", "watch", "-o", "json", "--interval", "0.2", "--tail", "1"]
    follower = Follower(args, _env(as_admin))
    try:
        first = json.loads(follower.lines(1)[0])
        assert first["id"] in {e["id"] for e in old}  # the newest old one, then the new ones
        new = [security_event("medium") for _ in range(3)]
        agent.upload_events(new[:2])
        agent.upload_events(new[2:])
        seen = [json.loads(line)["id"] for line in follower.lines(3)]
        assert seen == [e["id"] for e in new]
        status, stderr = follower.interrupt()
    finally:
        follower.kill()
    assert status == 130 and "Traceback" not in stderr


@pytest.mark.timeout(90)
def test_agents_list_watch_prints_agents_that_appear(as_admin: AdminClient) -> None:
    first = enrolled_agent(as_admin, "web-01")
    follower = Follower(["agents", "list", "--watch", "-q", "--interval", "0.5"], _env(as_admin))
    try:
        assert follower.lines(1) == [first.agent_id]
        second = enrolled_agent(as_admin, "web-02")
        assert follower.lines(1) == [second.agent_id]
        status, _ = follower.interrupt()
    finally:
        follower.kill()
    assert status == 130


def test_events_show_and_triage_leave_an_audit_record(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin)
    event = security_event("critical")
    event["details"] = {"ancestors": [{"pid": 900, "path": "/usr/sbin/sshd"}], "forensics": "fx-1"}
    agent.upload_events([event])
    shown = cli_json("events", "show", event["id"])
    assert shown["id"] == event["id"] and shown["details"] == event["details"]
    table = run_cli("events", "show", event["id"]).stdout
    assert "└─ /usr/bin/bash" in table and "fx-1" in table
    triaged = cli_json("events", "triage", event["id"], "--status", "in_progress", "-m", "mine")
    assert (triaged["status"], triaged["comment"]) == ("in_progress", "mine")
    (record,) = cli_json("audit", "list", "--action", "event.triage", "--actor", "admin")
    assert record["target"] == event["id"]
    assert run_cli("audit", "list", "--since", "1h", "-q").stdout.split()[0] == str(record["id"])
    assert run_cli("events", "list", "--status", "in_progress", "-q").stdout == f"{event['id']}\n"
    missing = run_cli("events", "show", str(uuid.uuid4()))
    assert missing.exit_code == 5 and missing.stderr.startswith("error: no event")


def test_hashes_show_lists_the_events_that_saw_it(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin)
    agent.upload_events([security_event("high"), security_event("low")])
    unknown = cli_json("hashes", "show", SHA)
    assert unknown["verdict"] == "unknown" and unknown["events_count"] == 2
    assert [s["hostname"] for s in unknown["sightings"]] == ["web-01"]
    run_cli("hashes", "block", SHA)
    shown = cli_json("hashes", "show", SHA)
    assert (shown["verdict"], shown["source"]) == ("malware", "admin")


def test_users_create_set_role_passwd_delete(as_admin: AdminClient) -> None:
    created = run_cli(
        "users",
        "create",
        "eve",
        "--role",
        "analyst",
        "--password-stdin",
        "-o",
        "json",
        input="a long password one\n",
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["role"] == "analyst"
    assert "eve" in run_cli("users", "list", "-q").stdout.split()
    assert cli_json("users", "set-role", "eve", "viewer")["role"] == "viewer"
    eve = AdminClient(as_admin.server)
    eve.login("eve", "a long password one")
    as_eve = {"TRAPSCTL_TOKEN": eve.token or ""}
    denied = run_cli("users", "list", env=as_eve)
    assert denied.exit_code == 4, denied.output
    changed = run_cli(
        "users",
        "passwd",
        "--password-stdin",
        input="a long password one\na long password two\n",
        env=as_eve,
    )
    assert changed.exit_code == 0, changed.output
    AdminClient(as_admin.server).login("eve", "a long password two")
    assert run_cli("users", "delete", "eve").exit_code == 2  # no terminal, no --yes
    assert run_cli("users", "delete", "eve", "--yes").exit_code == 0
    assert run_cli("users", "delete", "eve", "--yes").exit_code == 5
    short = run_cli("users", "create", "bob", "--password-stdin", input="short\n")
    assert short.exit_code == 1 and "secret" not in short.stderr
    assert "short" not in short.output


def test_version_shows_the_servers(as_admin: AdminClient) -> None:
    from esmd import __version__

    shown = cli_json("version")
    assert shown["esmd"] == __version__ and shown["server"] == as_admin.server


def test_agent_ids_and_hostnames_complete_from_the_server(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin, "web-07")
    env = _env(as_admin)
    hidden = subprocess.run(
        [TRAPSCTL, "__complete-agents", agent.agent_id[:4]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert hidden.stdout.split() == [agent.agent_id]
    names = subprocess.run(
        [TRAPSCTL, "__complete-agents", "--hostnames", "web"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert names.stdout.split() == ["web-07"]
    bash = (
        f"source {Path(__file__).resolve().parents[2] / 'completions' / 'trapsctl.bash'}; "
        "COMP_WORDS=(trapsctl agents show ''); COMP_CWORD=3; _trapsctl_completion trapsctl; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    tab = subprocess.run(["bash", "-c", bash], env=env, capture_output=True, text=True, timeout=30)
    assert agent.agent_id in tab.stdout.split()
    down = dict(env, TRAPSCTL_SERVER="http://127.0.0.1:9")
    refused = subprocess.run(
        [TRAPSCTL, "__complete-agents"], env=down, capture_output=True, text=True, timeout=30
    )
    assert (refused.returncode, refused.stdout, refused.stderr) == (0, "", "")


def test_watch_exits_3_when_the_esm_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPSCTL_SERVER", "http://127.0.0.1:9")
    monkeypatch.setenv("TRAPSCTL_TOKEN", "t")
    result = run_cli("events", "watch")
    assert result.exit_code == 3 and result.stderr.count("\n") == 1


def test_nothing_secret_in_argv_tracebacks_or_output(as_admin: AdminClient) -> None:
    result = run_cli("-v", "users", "create", "mallory", "--password-stdin", input="\n")
    assert result.exit_code == 2 and "no password" in result.stderr


def test_progress_bar_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from trapsctl.progress import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.delenv("TERM", raising=False)
        with progress(30, "Setting verdicts") as advance:
            for _ in range(30):
                advance()
        assert ("Setting verdicts" in stream.getvalue()) is drawn

"""trapsctl against a real esmd (served by uvicorn on loopback, on SQLite)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ctl_helpers import MemoryKeyring, run_cli

from trapsapi.admin_client import AdminClient
from trapsapi.agent_client import AgentClient, enroll
from trapsapi.errors import AuthError
from trapsctl.config import load_config

PASSWORD = "correct horse battery staple"  # tests/conftest.py's superuser
SHA = "ab" * 32
TRAPSCTL = str(Path(sys.executable).parent / "trapsctl")


@pytest.fixture
def as_admin(admin: AdminClient, monkeypatch: pytest.MonkeyPatch) -> AdminClient:
    """The script way in: TRAPSCTL_SERVER + TRAPSCTL_TOKEN, no login."""
    monkeypatch.setenv("TRAPSCTL_SERVER", admin.server)
    monkeypatch.setenv("TRAPSCTL_TOKEN", admin.token or "")
    return admin


def cli_json(*args: str) -> Any:
    result = run_cli(*args, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def enrolled_agent(admin: AdminClient, hostname: str = "web-01") -> AgentClient:
    """A fake endpoint that enrolls and checks in through the real agent protocol."""
    token = admin.create_token(label="test")["token"]
    identity = enroll(
        [admin.server],
        {
            "token": token,
            "hostname": hostname,
            "os": "linux",
            "os_version": "test",
            "agent_version": "0.1.0",
        },
    )
    agent = AgentClient([admin.server], identity["agent_id"], identity["agent_secret"])
    agent.checkin(
        {
            "hostname": hostname,
            "os": "linux",
            "os_version": "test",
            "agent_version": "0.1.0",
            "ips": ["10.0.0.11"],
            "modules": [
                {
                    "name": "malware",
                    "enabled": True,
                    "mode": "prevention",
                    "mechanism": "psutil-poll",
                    "healthy": False,
                    "detail": "not root",
                }
            ],
            "footprint": None,
            "policy_version": None,
            "outbox_depth": 0,
            "events_dropped": 0,
        }
    )
    return agent


def security_event(severity: str, module: str = "malware") -> Any:
    return {
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat(),
        "module": module,
        "severity": severity,
        "action": "killed",
        "process_path": "/tmp/evil-sleep",
        "sha256": SHA,
        "pid": 42,
        "ppid": 1,
        "parent_path": "/usr/bin/bash",
        "user": "alice",
        "uid": 1000,
        "cmdline": "/tmp/evil-sleep 30",
        "details": {},
    }


# --- login / whoami / logout ---------------------------------------------------------------


def test_login_keeps_the_token_in_the_keyring_and_logout_revokes_it(
    live_esm: Any, memory_keyring: MemoryKeyring, config_dir: Path
) -> None:
    login = run_cli(
        "login",
        "--server",
        live_esm.url,
        "--username",
        "admin",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert login.exit_code == 0, login.output
    assert login.stdout == ""
    assert "Logged in to" in login.stderr and "keyring" in login.stderr
    (token,) = memory_keyring.secrets.values()
    assert token not in (config_dir / "config.toml").read_text()
    assert not (config_dir / "credentials.json").exists()
    assert load_config().current_context == live_esm.url.split("//")[1]

    assert cli_json("whoami") == {"username": "admin", "role": "superuser"}
    table = run_cli("whoami").stdout
    assert "superuser" in table and "keyring" in table

    logout = run_cli("logout")
    assert logout.exit_code == 0, logout.output
    assert memory_keyring.secrets == {}
    with pytest.raises(AuthError):
        AdminClient(live_esm.url, token).whoami()  # revoked on the server, not only forgotten
    assert run_cli("agents", "list").exit_code == 4


def test_relogin_reuses_the_context(live_esm: Any, memory_keyring: MemoryKeyring) -> None:
    args = ["--server", live_esm.url, "--username", "admin", "--context", "lab"]
    assert run_cli("login", *args, "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    again = run_cli("login", "--password-stdin", input=PASSWORD + "\n")
    assert again.exit_code == 0, again.output
    assert list(load_config().contexts) == ["lab"]
    assert len(memory_keyring.secrets) == 1


def test_insecure_storage_without_a_keyring(
    live_esm: Any, null_keyring: None, config_dir: Path
) -> None:
    login = run_cli(
        "login",
        "--server",
        live_esm.url,
        "--username",
        "admin",
        "--password-stdin",
        "--insecure-storage",
        input=PASSWORD + "\n",
    )
    assert login.exit_code == 0, login.output
    assert "warning: the token is stored unencrypted" in login.stderr
    token_file = config_dir / "credentials.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert 'token_storage = "file"' in (config_dir / "config.toml").read_text()
    assert cli_json("agents", "list") == []
    assert run_cli("logout").exit_code == 0
    assert not token_file.exists()


def test_wrong_password_exits_4_and_stores_nothing(
    live_esm: Any, memory_keyring: MemoryKeyring, config_dir: Path
) -> None:
    result = run_cli(
        "login",
        "--server",
        live_esm.url,
        "--username",
        "admin",
        "--password-stdin",
        input="wrong\n",
    )
    assert result.exit_code == 4, result.output
    assert result.stderr.startswith("error: ")
    assert memory_keyring.secrets == {}
    assert not (config_dir / "config.toml").exists()


def test_a_bad_token_exits_4(live_esm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAPSCTL_SERVER", live_esm.url)
    monkeypatch.setenv("TRAPSCTL_TOKEN", "not-a-token")
    result = run_cli("agents", "list")
    assert result.exit_code == 4, result.output
    assert "check TRAPSCTL_TOKEN" in result.stderr


# --- the nouns --------------------------------------------------------------------------------


def test_tokens_create_list_revoke(as_admin: AdminClient) -> None:
    created = cli_json(
        "tokens", "create", "--label", "web", "--expires-in", "2h", "--max-uses", "5"
    )
    assert created["token"] and created["label"] == "web" and created["max_uses"] == 5
    listed = cli_json("tokens", "list")
    assert [t["id"] for t in listed] == [created["id"]]
    assert listed[0]["token"] is None  # the secret is never shown again
    assert "active" in run_cli("tokens", "list").stdout
    assert run_cli("tokens", "revoke", created["id"]).exit_code == 0
    assert cli_json("tokens", "list")[0]["revoked"] is True
    assert run_cli("tokens", "revoke", "no-such-token").exit_code == 5


def test_agents_list_show_and_filters(as_admin: AdminClient) -> None:
    assert cli_json("agents", "list") == []
    agent = enrolled_agent(as_admin)
    (listed,) = cli_json("agents", "list")
    assert listed["agent_id"] == agent.agent_id
    assert (listed["hostname"], listed["health"]) == ("web-01", "degraded")
    assert cli_json("agents", "list", "--health", "disconnected") == []
    assert [a["hostname"] for a in cli_json("agents", "list", "--health", "degraded")] == ["web-01"]
    assert len(cli_json("agents", "list", "--hostname", "WEB")) == 1
    assert cli_json("agents", "show", agent.agent_id)["modules"][0]["name"] == "malware"
    shown = run_cli("agents", "show", agent.agent_id).stdout
    assert "web-01" in shown and "psutil-poll" in shown
    missing = run_cli("agents", "show", "no-such-agent")
    assert missing.exit_code == 5
    assert missing.stderr.startswith("error: ") and missing.stderr.count("\n") == 1


def test_events_list_and_filters(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin)
    agent.upload_events([security_event("high"), security_event("low", module="restrictions")])
    assert len(cli_json("events", "list")) == 2
    assert len(cli_json("events", "list", "--since", "1h", "--agent", agent.agent_id)) == 2
    (high,) = cli_json("events", "list", "--severity", "medium")
    assert (high["severity"], high["sha256"], high["hostname"]) == ("high", SHA, "web-01")
    assert [e["module"] for e in cli_json("events", "list", "--module", "restrictions")] == [
        "restrictions"
    ]
    assert cli_json("events", "list", "--severity", "critical") == []
    assert len(cli_json("events", "list", "--limit", "1")) == 1
    limited = run_cli("events", "list", "--limit", "1")
    assert "Showing 1 of 2 events" in limited.stderr
    assert SHA[:12] in run_cli("events", "list").stdout


def test_hashes_block_allow_list_unset(as_admin: AdminClient) -> None:
    blocked = cli_json("hashes", "block", SHA.upper(), "--comment", "known bad")
    assert (blocked["sha256"], blocked["verdict"], blocked["comment"]) == (
        SHA,
        "malware",
        "known bad",
    )
    assert [h["verdict"] for h in cli_json("hashes", "list")] == ["malware"]
    assert cli_json("hashes", "allow", SHA)["verdict"] == "benign"
    assert cli_json("hashes", "list", "--verdict", "malware") == []
    assert run_cli("hashes", "unset", SHA).exit_code == 0
    assert cli_json("hashes", "list") == []


def test_real_process_timings_against_a_live_esm(as_admin: AdminClient) -> None:
    enrolled_agent(as_admin)
    env = dict(os.environ)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        result = subprocess.run(
            [TRAPSCTL, "agents", "list", "-o", "json"], capture_output=True, text=True, env=env
        )
        times.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["hostname"] == "web-01"
    print(f"trapsctl agents list -o json against esmd: best {min(times) * 1000:.0f} ms")
    assert min(times) < 1.5


def test_password_prompt_on_a_terminal_does_not_echo(live_esm: Any, config_dir: Path) -> None:
    """No --password-stdin: getpass asks on the terminal (a pty here), with echo off."""
    import pty

    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [TRAPSCTL, "login", "--server", live_esm.url, "--username", "admin", "--insecure-storage"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        start_new_session=True,  # no controlling terminal of ours: getpass uses the pty
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 20
    while b"Password: " not in seen and time.monotonic() < deadline:
        seen += os.read(main, 1024)
    os.write(main, PASSWORD.encode() + b"\n")
    assert process.wait(timeout=30) == 0
    try:
        while chunk := os.read(main, 4096):
            seen += chunk
    except OSError:
        pass  # EIO: the process closed the terminal
    os.close(main)
    assert b"Logged in to" in seen
    assert PASSWORD.encode() not in seen
    assert (config_dir / "credentials.json").exists()

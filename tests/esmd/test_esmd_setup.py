"""``esmd init``/``serve``/``add-user``, the settings, and migrations matching the models."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from esmd_harness import ADMIN_PASSWORD, ADMIN_USER, checkin_body
from sqlalchemy import create_engine, inspect

from trapsapi.errors import ConfigError, ExitCode

ESMD = str(Path(sys.executable).parent / "esmd")


def test_init_twice_through_the_cli(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from esmd.cli import main

    args = ["init", "--data-dir", str(tmp_path / "esm"), "--database-url", database_url]
    args += ["--admin-user", "root", "--admin-password-stdin"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("pass-word-1\n"))
    assert main(args) == 0
    first = capsys.readouterr()
    assert "superuser 'root' created" in first.err and first.out == ""
    monkeypatch.setattr(sys, "stdin", io.StringIO("other-pw-2\n"))
    assert main(args) == 0
    second = capsys.readouterr().err
    assert "already exists" in second and "up to date" in second
    engine = create_engine(database_url)
    with engine.connect() as connection:
        users = connection.exec_driver_sql("SELECT username, role FROM users").all()
    engine.dispose()
    assert [tuple(u) for u in users] == [("root", "superuser")]
    if database_url.startswith("sqlite"):
        assert oct(Path(database_url.removeprefix("sqlite:///")).stat().st_mode & 0o777) == "0o600"


def test_initialise_is_idempotent(esm_settings: Any) -> None:
    from esmd.setup import create_user, head_revision, initialise
    from trapsapi.enums import Role

    again = initialise(esm_settings, ADMIN_USER, "not used, user exists")
    assert not again.user_created and again.revision == head_revision()
    assert create_user(esm_settings, "carol", "carol's password", Role.VIEWER)
    assert not create_user(esm_settings, "carol", "whatever password", Role.SUPERUSER)


def test_serve_refuses_an_uninitialised_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from esmd.cli import main

    assert main(["serve", "--data-dir", str(tmp_path / "empty"), "--port", "0"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"esmd: error: no database at {tmp_path / 'empty' / 'esm.db'}: run `esmd init` first"
    ]
    assert not (tmp_path / "empty" / "esm.db").exists()  # nothing was created by looking


def test_serve_refuses_an_empty_postgres(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from esmd.cli import main

    assert main(["serve", "--data-dir", str(tmp_path), "--database-url", postgres_url]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is not initialised: run `esmd init` first" in lines[0]


def test_serve_runs_until_sigterm(
    esm_settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real console script: uvloop + httptools, timestamped log lines, clean exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = ["--data-dir", str(esm_settings.data_dir), "--database-url", esm_settings.url]
    log = (tmp_path / "serve.log").open("w+")
    env = {**os.environ, "ESMD_LISTEN_BACKLOG": "37"}
    server = subprocess.Popen([ESMD, "serve", *db, "--port", str(port)], stderr=log, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    assert json.load(r) == {"status": "ok"}
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.1)
        if shutil.which("ss"):  # a listening socket's Send-Q is its backlog
            listing = subprocess.run(
                ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
            )
            assert listing.stdout.split()[2] == "37", listing.stdout
        from esmd.cli import main  # a second server on the same port: one clear line

        assert main(["serve", *db, "--port", str(port)]) == ExitCode.ERROR
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith(f"esmd: error: cannot listen on 127.0.0.1:{port}:")
        poll = _held_poll(f"http://127.0.0.1:{port}")
    finally:
        stopping = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=20)
    # A held long-poll ends as the shutdown begins (the agent polls again elsewhere): it
    # neither holds the shutdown for uvicorn's graceful timeout nor gets a 500.
    poll.join(5)
    assert poll.outcome == [None] and time.monotonic() - stopping < 5
    # uvicorn shuts down gracefully, then re-raises the signal (systemd counts that as clean).
    assert code in (0, -signal.SIGTERM)
    log.seek(0)
    lines = log.read().splitlines()
    assert "Application shutdown complete" in lines[-2] + lines[-1]
    assert lines and all(line[:4].isdigit() and line[4] == "-" for line in lines), lines
    assert not any("Traceback" in line for line in lines)


def _held_poll(url: str) -> Any:
    """A thread holding an enrolled agent's long-poll on ``url``; ``outcome`` gets its reply."""
    import threading

    from trapsapi.admin_client import AdminClient
    from trapsapi.agent_client import AgentClient, enroll

    admin = AdminClient(url)
    admin.login(ADMIN_USER, ADMIN_PASSWORD)
    token = admin.create_token(label="poll", max_uses=1)["token"]
    request = {"token": token, "hostname": "h", "os": "linux", "os_version": "13"}
    agent = enroll([url], {**request, "agent_version": "0.1.0"})  # type: ignore[typeddict-item]
    client = AgentClient([url], agent["agent_id"], agent["agent_secret"], 70)
    version = int(client.checkin(checkin_body(hostname="h"))["policy"]["version"])
    outcome: list[Any] = []

    def hold() -> None:
        try:
            outcome.append(client.wait(version, 50, deliver=True))
        except Exception as exc:  # the test asserts on it
            outcome.append(exc)

    thread = threading.Thread(target=hold, daemon=True)
    thread.outcome = outcome  # type: ignore[attr-defined]
    thread.start()
    time.sleep(1.0)  # held by the server now
    assert not outcome
    return thread


def test_cli_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from esmd.cli import main

    data = ["--data-dir", str(tmp_path / "esm")]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a TTY, nothing on it
    assert main(["init", *data, "--admin-user", "a"]) == ExitCode.USAGE
    assert "no TTY" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["init", *data, "--admin-user", "a", "--admin-password-stdin"]) == ExitCode.USAGE
    assert "at least 8 characters" in capsys.readouterr().err
    assert main(["init", *data, "--admin-user", "bad name", "--admin-password-stdin"]) == 2
    assert "invalid user name" in capsys.readouterr().err
    unreachable = ["--database-url", "postgresql://nobody@127.0.0.1:1/none"]
    assert main(["serve", *data, *unreachable]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("esmd: error: database unavailable:")
    with pytest.raises(SystemExit) as info:
        main(["serve", "--port", "many"])
    assert info.value.code == ExitCode.USAGE
    assert capsys.readouterr().err.count("\n") == 1


def test_add_user_command(
    esm_settings: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from esmd.cli import main

    db = ["--data-dir", str(esm_settings.data_dir), "--database-url", esm_settings.url]
    monkeypatch.setattr(sys, "stdin", io.StringIO("viewer password\n"))
    assert main(["add-user", *db, "vera", "--password-stdin"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("viewer password\n"))
    assert main(["add-user", *db, "vera", "--password-stdin"]) == ExitCode.ERROR
    assert "already exists" in capsys.readouterr().err


def test_migrations_create_exactly_the_models(database_url: str, tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from esmd.config import Settings
    from esmd.db.tables import metadata
    from esmd.setup import initialise

    settings = Settings(data_dir=tmp_path, database_url=database_url)
    initialise(settings, ADMIN_USER, ADMIN_PASSWORD)
    engine = create_engine(settings.url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []
        tables = set(inspect(connection).get_table_names())
    engine.dispose()
    assert {"agents", "events", "users", "enrollment_tokens", "hash_verdicts"} <= tables


def test_settings_sources_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from esmd.config import Settings, load_settings

    defaults = Settings()
    expected_dir = (
        Path("/var/lib/esmd") if os.geteuid() == 0 else Path(os.environ["XDG_DATA_HOME"]) / "esmd"
    )
    assert defaults.data_dir == expected_dir
    assert defaults.url == f"sqlite:///{expected_dir / 'esm.db'}"
    assert (defaults.host, defaults.port) == ("127.0.0.1", 2125)
    assert defaults.public_urls == ["http://127.0.0.1:2125"]
    assert (defaults.heartbeat_interval_s, defaults.heartbeat_grace_s) == (3600, 600)
    assert (defaults.session_ttl_s, defaults.max_body_bytes) == (43200, 4 * 1024 * 1024)

    config = tmp_path / "esmd.toml"
    config.write_text('port = 3000\nheartbeat_interval_s = 60\nhost = "10.0.0.1"\n')
    monkeypatch.setenv("ESMD_CONFIG", str(config))
    monkeypatch.setenv("ESMD_PORT", "4000")
    monkeypatch.setenv("ESMD_PUBLIC_URLS", "https://a:1, https://b:2/")
    settings = Settings(heartbeat_interval_s=30)
    assert settings.port == 4000  # env beats file
    assert settings.heartbeat_interval_s == 30  # init beats env and file
    assert settings.host == "10.0.0.1"  # file beats defaults
    assert settings.public_urls == ["https://a:1", "https://b:2"]
    monkeypatch.delenv("ESMD_PUBLIC_URLS")
    derived = Settings()
    assert derived.public_urls == ["http://10.0.0.1:4000"]
    assert derived.servers_for("http://esm.lan:2125/") == ["http://esm.lan:2125"]
    assert settings.servers_for("http://esm.lan:2125/") == ["https://a:1", "https://b:2"]
    postgres = Settings(database_url="postgresql://u@h/db")
    assert postgres.url == "postgresql+psycopg://u@h/db"

    monkeypatch.setenv("ESMD_PORT", "not-a-port")
    with pytest.raises(ConfigError, match="setting port"):
        load_settings()
    monkeypatch.delenv("ESMD_PORT")
    config.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings()
    monkeypatch.setenv("ESMD_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_settings()

"""The one error funnel: every failure is one stderr line and a documented exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ctl_helpers import run_cli

from trapsapi import errors
from trapsctl import session

TRAPSCTL = str(Path(sys.executable).parent / "trapsctl")


def _failing_resolve(exc: BaseException) -> object:
    def resolve(ctx: object) -> object:
        raise exc

    return resolve


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.TrapsError("boom"), 1),
        (errors.ApiError("field 'x' is invalid", 422), 1),
        (errors.Conflict("already exists", 409), 1),
        (errors.UsageError("bad value"), 2),
        (errors.ConfigError("config.toml: invalid TOML"), 2),
        (errors.Unreachable("http://esm:2125: connection refused"), 3),
        (errors.AuthError("token expired", 401), 4),
        (errors.NotFound("agent not found", 404), 5),
    ],
)
def test_trapserrors_become_one_line_and_their_exit_code(
    monkeypatch: pytest.MonkeyPatch, exc: errors.TrapsError, code: int
) -> None:
    monkeypatch.setattr(session, "resolve", _failing_resolve(exc))
    result = run_cli("agents", "list")
    assert result.exit_code == code, result.output
    assert result.stderr == f"error: {exc.message}\n"
    assert result.stdout == ""


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "resolve", _failing_resolve(KeyboardInterrupt()))
    assert run_cli("agents", "list").exit_code == 130


def test_a_bug_is_one_line_with_a_hint_and_verbose_shows_the_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session, "resolve", _failing_resolve(ZeroDivisionError("oops")))
    quiet = run_cli("agents", "list")
    assert quiet.exit_code == 1
    assert quiet.stderr == "error: unexpected ZeroDivisionError: oops (run with -v for details)\n"
    loud = run_cli("-v", "agents", "list")
    assert loud.exit_code == 1
    assert "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.endswith("error: unexpected ZeroDivisionError: oops\n")


def test_verbose_traceback_never_shows_local_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(ctx: object) -> object:
        secret_token = "tps_SUPER_SECRET"  # noqa: F841  (a local a pretty traceback would show)
        raise errors.AuthError("token expired", 401)

    monkeypatch.setattr(session, "resolve", resolve)
    result = run_cli("-v", "agents", "list")
    assert result.exit_code == 4
    assert "tps_SUPER_SECRET" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["agents", "list", "--bogus"],
        ["agents", "lst"],
        ["agents", "show"],
        ["-o", "xml", "agents", "list"],
        ["events", "triage", "e0000000-0000-4000-8000-000000000001"],
        ["events", "show", "not-a-uuid"],
        ["events", "watch", "--interval", "0"],
        ["events", "watch", "--interval", "soon"],
        ["users", "set-role", "bob", "god"],
        ["audit", "list", "--since", "whenever"],
        ["events", "list", "--severity", "extreme"],
        ["events", "list", "--since", "last tuesday"],
        ["events", "list", "--limit", "0"],
        ["hashes", "block", "not-a-hash"],
        ["tokens", "create", "--expires-in", "10s"],
        ["tokens", "create", "--expires-in", "soon"],
        ["completion", "tcsh"],
    ],
)
def test_usage_errors_exit_2_before_any_request(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Error" in result.stderr


def test_not_logged_in_exits_4() -> None:
    result = run_cli("agents", "list")
    assert result.exit_code == 4
    assert result.stderr == (
        "error: not logged in: run trapsctl login (or set TRAPSCTL_SERVER and TRAPSCTL_TOKEN)\n"
    )


def test_unreachable_server_exits_3_in_a_real_process() -> None:
    env = dict(os.environ, TRAPSCTL_SERVER="http://127.0.0.1:9", TRAPSCTL_TOKEN="t")
    result = subprocess.run(
        [TRAPSCTL, "agents", "list", "-o", "json"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 3
    assert result.stdout == ""
    assert result.stderr == "error: http://127.0.0.1:9: connection refused\n"


def test_help_documents_the_exit_codes() -> None:
    result = run_cli("--help")
    assert result.exit_code == 0
    for line in ["0  ok", "1  error", "2  usage", "3  ESM unreachable", "4  auth", "5  not found"]:
        assert line in result.stdout


def test_version() -> None:
    assert run_cli("--version").stdout == "trapsctl 0.1.0\n"
    assert (
        run_cli("version", "-o", "json").stdout == '{\n  "trapsctl": "0.1.0",\n  "api": "v1"\n}\n'
    )

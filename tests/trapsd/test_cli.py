"""The command line's contract: one-line errors, documented exit codes, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agent_helpers import Agents, free_url, policy_for, trapsd

from trapsd.cli import main
from trapsd.identity import Identity, save_identity
from trapsd.policy import save_policy


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trapsd: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["launch"], "invalid choice: 'launch'"),
        (["status", "-o", "xml"], "invalid choice: 'xml'"),
        (["enroll", "--server", "http://esm"], "no enrollment token"),
        (["enroll", "--server", "ftp://esm", "--token", "t"], "invalid server URL 'ftp://esm'"),
        (["enroll", "--token", "t"], "the following arguments are required: --server"),
    ],
)
def test_usage_errors_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = run(capsys, *args, *(["--state-dir", tmp_path] if args else []))
    assert code == 2
    assert message in one_line_error(err)


def test_a_bad_setting_in_the_environment_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRAPSD_REQUEST_TIMEOUT_S", "soon")
    code, _, err = run(capsys, "status", "--state-dir", tmp_path)
    assert code == 2 and "TRAPSD_REQUEST_TIMEOUT_S" in one_line_error(err)


def test_enroll_against_a_dead_server_exits_3_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRAPSD_ENROLL_TOKEN", "tok")  # the token need not be in argv
    state = tmp_path / "state"
    code, _, err = run(capsys, "enroll", "--server", free_url(), "--state-dir", state)
    assert code == 3 and "connection refused" in one_line_error(err)
    assert not (state / "identity.json").exists()


def test_enroll_refuses_to_overwrite_an_identity(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    save_identity(tmp_path, Identity("a", "s", ["http://esm"]))
    code, _, err = run(
        capsys, "enroll", "--server", "http://esm", "--token", "t", "--state-dir", tmp_path
    )
    assert code == 1 and "use --force" in one_line_error(err)


def test_not_enrolled_and_not_running(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "status", "--state-dir", tmp_path)
    assert code == 1 and "not enrolled" in one_line_error(err)
    code, _, err = run(capsys, "run", "--state-dir", tmp_path)
    assert code == 1 and "not enrolled" in one_line_error(err)
    save_identity(tmp_path, Identity("agent-1", "s", ["http://esm:2125"]))
    code, _, err = run(capsys, "checkin", "--state-dir", tmp_path)
    assert code == 1 and "trapsd is not running" in one_line_error(err)


def test_status_from_the_state_files_when_the_daemon_is_down(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    save_identity(tmp_path, Identity("agent-1", "s", ["http://esm:2125"]))
    save_policy(tmp_path, dict(policy_for([], version=4).wire or {}))
    code, out, err = run(capsys, "status", "--state-dir", tmp_path)
    assert code == 0, err
    assert "agent-1" in out and "not running" in out and "version 4" in out and "never" in out
    code, out, _ = run(capsys, "status", "--state-dir", tmp_path, "-o", "json")
    status = json.loads(out)
    assert (status["agent_id"], status["running"], status["policy_version"]) == (
        "agent-1",
        False,
        4,
    )


def test_a_running_daemon_without_its_server(agents: Agents, tmp_path: Path) -> None:
    """Second daemon on one state dir refused; check-in says unreachable (exit 3)."""
    state = tmp_path / "agent"
    save_identity(state, Identity("agent-1", "s", [free_url(), free_url()]))
    agents.start(state)
    second = trapsd("run", "--state-dir", state)
    assert second.returncode == 1 and "another trapsd is running" in second.stderr
    checkin = trapsd("checkin", "--state-dir", state)
    assert checkin.returncode == 3
    assert one_line_error(checkin.stderr).startswith("trapsd: error: check-in failed: no ESM")
    status = trapsd("status", "--state-dir", state)
    assert status.returncode == 0
    assert "running (pid" in status.stdout and "failed: no ESM server reachable" in status.stdout
    assert (state / "control.sock").stat().st_mode & 0o777 == 0o600

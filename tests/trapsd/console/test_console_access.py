"""Who may open ``trapsd console``: Textual installed, and the policy's console visibility."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trapsd.cli import main
from trapsd.console.access import ConsoleForbidden, check_access, visibility
from trapsd.control import DaemonNotRunning


def status_gone() -> dict[str, object]:
    raise DaemonNotRunning("trapsd is not running")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (None, "visible"),
        ({"version": 3}, "visible"),
        ({"agent": {"console": "Hidden"}}, "hidden"),
        ({"agent": {"console_visibility": "root"}}, "root"),
        ({"agent": {"console": "root_only"}}, "root"),  # the ESM's policy setting
        ({"console": {"visibility": "visible"}}, "visible"),
        ({"agent": {"console": "sometimes"}}, "root"),  # unknown: the narrower choice
        ({"agent": "not an object", "console": 7}, "root"),
    ],
)
def test_visibility_is_read_defensively(policy: object, expected: str) -> None:
    assert visibility(policy) == expected  # type: ignore[arg-type]


def test_hidden_refuses_everyone_and_root_refuses_others(tmp_path: Path) -> None:
    (tmp_path / "policy.json").write_text(json.dumps({"agent": {"console": "hidden"}}))
    with pytest.raises(ConsoleForbidden, match="hidden by the policy"):
        check_access(tmp_path, 0, status_gone)
    (tmp_path / "policy.json").write_text(json.dumps({"agent": {"console": "root_only"}}))
    assert check_access(tmp_path, 0, status_gone) == "root"
    with pytest.raises(ConsoleForbidden, match="limited to root"):
        check_access(tmp_path, 1000, status_gone)
    (tmp_path / "policy.json").unlink()
    assert check_access(tmp_path, 1000, status_gone) == "visible"


def test_an_unreadable_policy_asks_the_daemon_or_refuses(tmp_path: Path) -> None:
    (tmp_path / "policy.json").mkdir()  # unreadable as a file, whoever runs the test
    assert check_access(tmp_path, 1000, lambda: {"console": "visible"}) == "visible"
    with pytest.raises(ConsoleForbidden, match="limited to root"):
        check_access(tmp_path, 1000, lambda: {"console": "root"})
    with pytest.raises(ConsoleForbidden, match="run as root"):
        check_access(tmp_path, 1000, status_gone)
    assert check_access(tmp_path, 0, status_gone) == "root"


def test_the_command_refuses_a_hidden_console_with_exit_4(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "policy.json").write_text(json.dumps({"agent": {"console": "hidden"}}))
    assert main(["console", "--state-dir", str(tmp_path)]) == 4
    err = capsys.readouterr().err
    assert err == "trapsd: error: the local console is hidden by the policy of this agent\n"


def test_without_textual_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "textual", None)  # what an agent-only install looks like
    assert main(["console", "--state-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "trapsd: error: trapsd console needs Textual: pip install 'traps[cli]'\n"

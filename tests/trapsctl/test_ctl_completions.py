"""Shell completions: the committed scripts are current, and TAB really completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ctl_helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FILES = {
    "bash": ROOT / "completions" / "trapsctl.bash",
    "zsh": ROOT / "completions" / "_trapsctl",
    "fish": ROOT / "completions" / "trapsctl.fish",
}


def test_committed_completion_scripts_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("shell", sorted(FILES))
def test_completion_command_prints_the_committed_script(shell: str) -> None:
    result = run_cli("completion", shell)
    assert result.exit_code == 0, result.output
    assert result.stdout == FILES[shell].read_text()


def test_zsh_script_starts_with_compdef() -> None:
    assert FILES["zsh"].read_text().startswith("#compdef trapsctl\n")


def _bash_complete(words: list[str]) -> list[str]:
    script = (
        f"source {FILES['bash']}; COMP_WORDS=({' '.join(words)}); "
        f"COMP_CWORD={len(words) - 1}; _trapsctl_completion trapsctl; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        ["bash", "--norc", "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_options_and_choices() -> None:
    assert _bash_complete(["trapsctl", "ag"]) == ["agents"]
    assert _bash_complete(["trapsctl", "hashes", ""])[:6] == [
        "block",
        "allow",
        "unset",
        "list",
        "import",
        "feeds",
    ]
    assert _bash_complete(["trapsctl", "events", "list", "--severity", "c"]) == ["critical"]
    assert "--hostname" in _bash_complete(["trapsctl", "agents", "list", "--"])

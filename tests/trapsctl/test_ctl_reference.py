"""docs/cli-reference.md is generated from the command tree and must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "cli-reference.md"


def test_the_committed_reference_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def subcommands(command: Any) -> list[tuple[str, Any]]:
    """A group's commands as --help lists them (the root loads its own on demand)."""
    import typer._click as click
    from typer.core import TyperGroup

    if not isinstance(command, TyperGroup):
        return []
    context = click.Context(command)
    return [(name, command.get_command(context, name)) for name in command.list_commands(context)]


def test_every_visible_command_has_a_section_and_hidden_ones_none() -> None:
    import typer

    from trapsctl.cli import app

    text = REFERENCE.read_text(encoding="utf-8")
    root = typer.main.get_command(app)
    for noun, command in subcommands(root):
        hidden = getattr(command, "hidden", False)
        assert (f"`trapsctl {noun}`" in text) is not hidden, noun
        for verb, _ in subcommands(command):
            assert f"`trapsctl {noun} {verb}`" in text
    assert "--password-stdin" in text and "__complete-agents" not in text

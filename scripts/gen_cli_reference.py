#!/usr/bin/env python3
"""Write docs/cli-reference.md from trapsctl's command tree (``make cli-reference``).

Walks the command tree behind the Typer app (Typer's own Click classes, the root's commands
loaded from ``trapsctl.cli.COMMANDS``): every command and
group, its help, arguments and options as ``--help`` shows them (choices, defaults,
environment variables). Hidden commands are left out.
``--check`` exits 1 when the committed file differs (tests/trapsctl/test_ctl_reference.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import typer
import typer._click as click
from typer.core import TyperGroup

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "cli-reference.md"


def _first_paragraph(text: str | None) -> str:
    text = (text or "").replace("\b\n", "")
    return text.strip()


def _option_row(param: Any, context: Any) -> str:
    """The option as ``--help`` shows it (names, value, help with default and env var)."""
    names, help_text = param.get_help_record(context)
    cells = [f"`{names}`", " ".join(help_text.split())]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def subcommands(command: Any) -> list[tuple[str, Any]]:
    """A group's commands in --help order; the root loads its lazily registered ones."""
    if not isinstance(command, TyperGroup):
        return []
    context = click.Context(command)
    names = command.list_commands(context)
    return [(name, command.get_command(context, name)) for name in names]


def _section(name: str, command: Any, depth: int) -> list[str]:
    if getattr(command, "hidden", False):
        return []
    lines = [f"{'#' * min(depth, 4)} `{name}`", ""]
    help_text = _first_paragraph(command.help)
    if help_text:
        lines += [help_text, ""]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    options = [
        p
        for p in command.params
        if p.param_type_name == "option" and not getattr(p, "hidden", False) and p.opts
    ]
    usage = " ".join(
        [name, *(f"{(a.metavar or a.name or '').upper()}" for a in arguments)]
        + (["[OPTIONS]"] if options else [])
    )
    lines += [f"Usage: `{usage}`", ""]
    if options:
        context = click.Context(command)
        lines += ["| option | meaning |", "|---|---|"]
        lines += [_option_row(o, context) for o in options]
        lines.append("")
    for sub_name, sub in subcommands(command):
        lines += _section(f"{name} {sub_name}", sub, depth + 1)
    return lines


def reference() -> str:
    from trapsctl.cli import app

    root: Any = typer.main.get_command(app)
    lines = [
        "# trapsctl reference",
        "",
        "Generated from the command tree by `scripts/gen_cli_reference.py` (`make",
        "cli-reference`); a test fails when it is stale. The overview, exit codes, dashboard",
        "keys and scripting examples are in [cli.md](cli.md).",
        "",
    ]
    lines += _section("trapsctl", root, 2)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = reference()
    current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else None
    if current == text:
        return 0
    if args.check:
        print(f"{OUTPUT.relative_to(ROOT)} is stale: run make cli-reference", file=sys.stderr)
        return 1
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

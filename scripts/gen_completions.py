#!/usr/bin/env python3
"""Write trapsctl's shell completion scripts under completions/ (``make completions``).

The scripts come from Typer itself: ``_TRAPSCTL_COMPLETE=source_<shell> trapsctl``. Each is a
small shim that re-runs ``trapsctl`` on every TAB, so completions always match the installed
command tree. ``--check`` exits 1 when a committed file differs (the test suite runs it).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = {
    "bash": ROOT / "completions" / "trapsctl.bash",
    "zsh": ROOT / "completions" / "_trapsctl",
    "fish": ROOT / "completions" / "trapsctl.fish",
}


def trapsctl_command() -> list[str]:
    """The installed console script next to this Python (so prog_name is "trapsctl")."""
    script = Path(sys.executable).parent / "trapsctl"
    if not script.exists():
        sys.exit(f"{script} not found: install the project first (make test or pip install -e .)")
    return [str(script)]


def completion_script(shell: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAPSCTL_")}
    env["_TRAPSCTL_COMPLETE"] = f"source_{shell}"
    result = subprocess.run(
        trapsctl_command(), env=env, capture_output=True, text=True, check=False, timeout=60
    )
    if result.returncode != 0 or not result.stdout.strip():
        sys.exit(f"trapsctl gave no {shell} completion script: {result.stderr.strip()}")
    # Typer's script starts with a blank line; zsh needs "#compdef" on the first line.
    return result.stdout.strip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for shell, path in OUTPUTS.items():
        text = completion_script(shell)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(
            "stale completion scripts: " + ", ".join(map(str, stale)) + "; run make completions",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a trapsctl run loads, and how long it takes (completions re-run trapsctl on every TAB)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

TRAPSCTL = str(Path(sys.executable).parent / "trapsctl")
NEVER_IN_SCRIPTED_COMMANDS = {"textual", "pydantic", "pydantic_core", "sqlalchemy", "fastapi"}


def _full_modules_loaded(code: str, env: dict[str, str] | None = None) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _modules_loaded(code: str, env: dict[str, str] | None = None) -> set[str]:
    return {name.split(".")[0] for name in _full_modules_loaded(code, env)}


def test_importing_the_cli_loads_no_tui_no_rich_and_no_http_stack() -> None:
    loaded = _modules_loaded("import trapsctl.cli")
    assert not loaded & (NEVER_IN_SCRIPTED_COMMANDS | {"rich", "keyring", "http", "ssl"})


def test_a_json_listing_loads_neither_rich_nor_pydantic_nor_keyring() -> None:
    run = (
        "import sys\nfrom trapsctl.cli import app\n"
        "try:\n    app(['agents', 'list', '-o', 'json'], prog_name='trapsctl')\n"
        "except SystemExit as exit:\n    assert exit.code == 3, exit.code"
    )
    env = dict(os.environ, TRAPSCTL_SERVER="http://127.0.0.1:9", TRAPSCTL_TOKEN="t")
    loaded = _modules_loaded(run, env)
    assert not loaded & (NEVER_IN_SCRIPTED_COMMANDS | {"rich", "keyring"})


def test_a_command_imports_only_its_own_command_modules() -> None:
    """The root loads commands from trapsctl.cli.COMMANDS on demand (lazy command groups)."""
    run = (
        "from trapsctl.cli import app\n"
        "try:\n    app(['agents', 'list', '-o', 'json'], prog_name='trapsctl')\n"
        "except SystemExit as exit:\n    assert exit.code == 3, exit.code"
    )
    env = dict(os.environ, TRAPSCTL_SERVER="http://127.0.0.1:9", TRAPSCTL_TOKEN="t")
    commands = {m for m in _full_modules_loaded(run, env) if m.startswith("trapsctl.commands.")}
    # agents, and the modules its verbs come from (targeting/explain, isolation, completion)
    expected = {"agents", "agent_policy", "actions", "complete"}
    assert commands == {f"trapsctl.commands.{name}" for name in expected}
    assert not _full_modules_loaded("import trapsctl.cli") & {"trapsctl.commands.agents"}


def test_help_still_lists_every_command_of_the_table() -> None:
    from trapsctl.cli import COMMANDS

    help_text = subprocess.run(
        [TRAPSCTL, "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert (f"  {name} " in help_text) is not name.startswith("__"), name


def test_the_stdlib_parameter_conversion_is_in_place() -> None:
    from trapsctl import coercion

    assert coercion.install(), "Typer internals changed: parameters go through pydantic again"


def best_of(command: list[str], runs: int = 7, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, env=env, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.mark.timeout(120)
def test_start_up_time(record_property: Callable[[str, object], None]) -> None:
    """Printed with -s; the bound is loose (shared CI machines), the figures go in the report."""
    bare = best_of([sys.executable, "-c", "pass"])
    help_s = best_of([TRAPSCTL, "--help"])
    env = dict(os.environ, TRAPSCTL_SERVER="http://127.0.0.1:9", TRAPSCTL_TOKEN="t")
    refused_s = best_of([TRAPSCTL, "agents", "list", "-o", "json"], env=env)
    complete_env = dict(
        os.environ, _TRAPSCTL_COMPLETE="complete_bash", COMP_WORDS="trapsctl ag", COMP_CWORD="1"
    )
    complete_s = best_of([TRAPSCTL], env=complete_env)
    figures = {
        "python -c pass": bare,
        "trapsctl --help": help_s,
        "trapsctl agents list -o json (refused)": refused_s,
        "bash TAB completion": complete_s,
    }
    for name, seconds in figures.items():
        record_property(name, round(seconds, 3))
        print(f"{name}: {seconds * 1000:.0f} ms")
    assert max(help_s, refused_s, complete_s) < 1.5

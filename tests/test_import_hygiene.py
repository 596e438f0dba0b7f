"""Run-time checks behind the import-linter contracts: what each entry point really loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out)}


HEAVY = {"pydantic", "sqlalchemy", "sqlmodel", "fastapi", "starlette", "httpx", "rich", "typer"}


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import trapsapi.agent_client, trapsapi.admin_client, trapsapi.settings", HEAVY),
        ("import trapsd.cli", HEAVY | {"textual", "keyring", "uvicorn", "esmd", "trapsctl"}),
        ("import trapsd.daemon", HEAVY | {"textual", "keyring", "uvicorn"}),
        ("import trapsctl.cli", {"textual", "pydantic", "sqlalchemy", "fastapi", "esmd", "trapsd"}),
        ("import esmd.app", {"textual", "trapsd", "trapsctl"}),
    ],
)
def test_entry_point_imports_stay_lean(statement: str, forbidden: set[str]) -> None:
    loaded = _modules_after(statement)
    assert not (loaded & forbidden), f"{statement} loads {sorted(loaded & forbidden)}"

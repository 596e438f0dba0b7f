"""The shipped systemd units are valid and start commands that exist with those options."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[1] / "packaging" / "systemd"
BIN = Path(sys.executable).parent


def _exec_start(unit: Path) -> list[str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(unit)
    return shlex.split(parser["Service"]["ExecStart"])


@pytest.mark.parametrize("name", ["trapsd.service", "esmd.service"])
def test_unit_passes_systemd_analyze(name: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    program = _exec_start(UNITS / name)[0]
    local = tmp_path / name
    text = (UNITS / name).read_text().replace(program, str(BIN / Path(program).name))
    local.write_text(text.replace("User=esmd\n", "").replace("Group=esmd\n", ""))
    result = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True)
    problems = [line for line in result.stderr.splitlines() if name in line]
    assert problems == [], problems


@pytest.mark.parametrize("name", ["trapsd.service", "esmd.service"])
def test_exec_start_options_are_accepted_by_the_program(name: str) -> None:
    program, *args = _exec_start(UNITS / name)
    result = subprocess.run(
        [str(BIN / Path(program).name), *args, "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

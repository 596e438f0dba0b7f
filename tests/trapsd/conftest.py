"""Fixtures for the agent's tests: settings, and sensors that are always stopped."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import Agents, Sensors
from behaviour_helpers import build

from trapsd.config import AgentSettings


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The agent's integration tests need one real ESM, not one per database engine."""
    return sqlite_url


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(state_dir=tmp_path / "agent", backoff_min_s=0.2, backoff_max_s=1.0)


@pytest.fixture
def sensors() -> Iterator[Sensors]:
    harness = Sensors()
    try:
        yield harness
    finally:
        harness.stop_all()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    harness = Agents(tmp_path)
    try:
        yield harness
    finally:
        harness.stop_all()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build(tmp_path_factory.mktemp("behaviour-bin"))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for process in reversed(started):  # tracers first: a tracee is reaped after them
            if process.poll() is None:
                process.kill()
        for process in reversed(started):
            process.wait(10)

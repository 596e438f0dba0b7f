"""Fixtures for the trapsctl tests: keyrings that work, fail or are absent; one ESM database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import keyring
import keyring.backends.null
import pytest
from ctl_helpers import LockedKeyring, MemoryKeyring
from keyring.backend import KeyringBackend


@contextmanager
def _installed(backend: KeyringBackend) -> Iterator[None]:
    """Make ``backend`` the process's keyring for the test, then put the previous one back."""
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def memory_keyring() -> Iterator[MemoryKeyring]:
    backend = MemoryKeyring()
    with _installed(backend):
        yield backend


@pytest.fixture
def locked_keyring() -> Iterator[LockedKeyring]:
    backend = LockedKeyring()
    with _installed(backend):
        yield backend


@pytest.fixture
def null_keyring() -> Iterator[None]:
    """The headless-Linux case: no keyring backend works."""
    with _installed(keyring.backends.null.Keyring()):  # type: ignore[no-untyped-call]
        yield


@pytest.fixture
def config_dir() -> Path:
    """trapsctl's directory under the test's own XDG_CONFIG_HOME (set by tests/conftest.py)."""
    return Path(os.environ["XDG_CONFIG_HOME"]) / "trapsctl"


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The console's tests need one real ESM, not one per database: SQLite keeps them fast."""
    return sqlite_url

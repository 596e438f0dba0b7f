"""The console tests draw in colour: tests/conftest.py sets NO_COLOR for the scripted CLI."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)


@pytest.fixture
def anyio_backend() -> str:
    """Pilot tests are ``async``: run them on asyncio (the anyio pytest plugin)."""
    return "asyncio"

"""Fixtures of the esmd tests (the helpers themselves live in esmd_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from esmd_harness import Esm
from sqlalchemy import create_engine

from trapsapi.admin_client import AdminClient


@pytest.fixture(autouse=True)
def _cheap_password_hashing(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 at its production cost takes ~170 ms here, and the tests hash and verify a lot.

    Tests named ``test_real_argon2*`` keep the production parameters.
    """
    if request.node.name.startswith("test_real_argon2"):
        return
    from argon2 import PasswordHasher

    import esmd.security

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(esmd.security, "_hasher", lambda: cheap)


@pytest.fixture
def esm(live_esm: Any, esm_settings: Any, admin: AdminClient) -> Iterator[Esm]:
    harness = Esm(live_esm.url, esm_settings, admin, create_engine(esm_settings.url))
    try:
        yield harness
    finally:
        harness.close()

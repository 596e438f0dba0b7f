"""Fixtures of the esmd tests (the helpers themselves live in esmd_harness.py)."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from esmd_harness import ADMIN_PASSWORD, ADMIN_USER, Esm
from sqlalchemy import create_engine

from trapsapi.admin_client import AdminClient

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


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


class _Templates:
    """Per-worker databases that tests reuse instead of creating and migrating their own.

    SQLite: an initialised file, copied for each test. PostgreSQL: one database per worker;
    a test that needs an initialised ESM gets it truncated and re-seeded (the superuser and
    the policy row), any other test gets it with an empty schema. Saves ~1 s a test.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sqlite: Path | None = None
        self.postgres: str | None = None
        self.postgres_at_head = False

    def sqlite_file(self) -> Path:
        if self.sqlite is None:
            from esmd.config import Settings
            from esmd.setup import initialise

            path = self.root / "template.db"
            settings = Settings(data_dir=self.root, database_url=f"sqlite:///{path}")
            initialise(settings, ADMIN_USER, ADMIN_PASSWORD)
            self.sqlite = path
        return self.sqlite


def _pg_admin(url: str, *statements: str) -> None:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _pg_run(url: str, *statements: str) -> None:
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    templates = _Templates(tmp_path_factory.mktemp("esm-template"))
    yield templates
    if templates.postgres is not None:
        _pg_admin(templates.postgres, f'DROP DATABASE IF EXISTS "{_name(templates.postgres)}"')


def _postgres_base_url() -> str:
    """As tests/conftest.py decides: the server to use, or skip (or fail when required)."""
    url = os.environ.get("TRAPS_TEST_DATABASE_URL", PG_DEFAULT)
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        if os.environ.get("TRAPS_REQUIRE_POSTGRES") == "1" or "TRAPS_TEST_DATABASE_URL" in (
            os.environ
        ):
            pytest.fail(f"PostgreSQL required but not reachable at {url}")
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 (set TRAPS_TEST_DATABASE_URL)")
    return url


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, _templates: _Templates) -> str:
    """The worker's PostgreSQL database: emptied, unless ``esm_settings`` will re-seed it."""
    base = _postgres_base_url()
    if _templates.postgres is None:
        url = base.rsplit("/", 1)[0] + f"/traps_w_{uuid.uuid4().hex[:12]}"
        _pg_admin(url, f'CREATE DATABASE "{_name(url)}"')
        _templates.postgres = url
    url = _templates.postgres
    # Connections a previous test left behind must not hold locks on the tables.
    _pg_admin(
        url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{_name(url)}' AND pid <> pg_backend_pid()",
    )
    if "esm_settings" not in request.fixturenames:
        _pg_run(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
        _templates.postgres_at_head = False
    return url


@pytest.fixture
def esm_settings(
    database_url: str, tmp_path: Path, _templates: _Templates, _cheap_password_hashing: None
) -> Any:
    """Like tests/conftest.py's: an initialised ESM (schema at head, the superuser), but
    from a per-worker database instead of one migrated for every test."""
    from esmd.config import Settings
    from esmd.setup import initialise

    settings = Settings(data_dir=tmp_path / "esm", database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if database_url.startswith("sqlite"):
        target = Path(database_url.removeprefix("sqlite:///"))
        shutil.copyfile(_templates.sqlite_file(), target)
        os.chmod(target, 0o600)
        return settings
    if _templates.postgres_at_head:
        _reseed(database_url)
    else:
        _pg_run(database_url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
        initialise(settings, ADMIN_USER, ADMIN_PASSWORD)
        _templates.postgres_at_head = True
    return settings


def _reseed(url: str) -> None:
    """Back to the state ``initialise`` leaves: no rows but the superuser, the policy version
    and the default policy."""
    from esmd.db.tables import metadata
    from esmd.security import hash_password
    from esmd.timeutil import utcnow

    names = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)
    admin = hash_password(ADMIN_PASSWORD).replace("'", "''")
    _pg_run(
        url,
        f"TRUNCATE {names} RESTART IDENTITY CASCADE",
        "INSERT INTO policy_state (id, version) VALUES (1, 1)",
        "INSERT INTO users (username, password_hash, role, created_at) VALUES "
        f"('{ADMIN_USER}', '{admin}', 'superuser', '{utcnow().isoformat()}')",
    )
    from esmd.db.engine import Database
    from esmd.services.policies import create_default_policies

    db = Database.from_url(url, 1, 0)
    try:
        create_default_policies(db)  # and the shipped policy, as ``esmd init`` creates it
    finally:
        db.dispose()

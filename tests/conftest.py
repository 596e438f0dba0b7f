"""Fixtures shared by the whole suite: databases (SQLite and a real PostgreSQL) and a live esmd."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keep the developer's own config, credentials and env out of every test."""
    for name in list(os.environ):
        if name.startswith(("ESMD_", "TRAPSD_", "TRAPSCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home" / ".local" / "share"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setenv("NO_COLOR", "1")


def _postgres_base_url() -> str | None:
    """The PostgreSQL server to test against, or None when there is none (outside CI)."""
    url = os.environ.get("TRAPS_TEST_DATABASE_URL", PG_DEFAULT)
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
    except OSError:
        if (
            os.environ.get("TRAPS_REQUIRE_POSTGRES") == "1"
            or "TRAPS_TEST_DATABASE_URL" in os.environ
        ):
            pytest.fail(f"PostgreSQL required but not reachable at {url}")
        return None
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards."""
    base = _postgres_base_url()
    if base is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432 (set TRAPS_TEST_DATABASE_URL)")
    import psycopg

    name = f"traps_t_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    admin_dsn = plain.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'esm.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on a real PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


class LiveServer:
    """esmd's real app served by uvicorn on a loopback port, in a thread of the test process."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", loop="asyncio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("esmd did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct horse battery staple"


@pytest.fixture
def esm_settings(database_url: str, tmp_path: Path) -> Any:
    """Settings for an initialised ESM (schema migrated, superuser created) on each database."""
    from esmd.config import Settings
    from esmd.setup import initialise

    settings = Settings(data_dir=tmp_path / "esm", database_url=database_url)
    initialise(settings, ADMIN_USER, ADMIN_PASSWORD)
    return settings


@pytest.fixture
def live_esm(esm_settings: Any) -> Iterator[LiveServer]:
    from esmd.app import create_app

    with LiveServer(create_app(esm_settings)) as server:
        yield server


@pytest.fixture
def admin(live_esm: LiveServer) -> Iterator[Any]:
    """An AdminClient logged in as the superuser of ``live_esm``."""
    from trapsapi.admin_client import AdminClient

    client = AdminClient(live_esm.url)
    client.login(ADMIN_USER, ADMIN_PASSWORD)
    yield client
    client.close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every test that starts a real agent on one xdist worker, one after another.

    fanotify and the proc connector see the whole host: an agent started by one test judges
    the execs of every other test. Serialising them keeps each test's agent the only one
    deciding while it runs (make test uses ``--dist loadgroup``).
    """
    for item in items:
        parts = item.path.parts
        if "trapsd" in parts or "e2e" in parts:
            item.add_marker(pytest.mark.xdist_group("host-agents"))

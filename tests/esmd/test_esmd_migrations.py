"""The Alembic revisions create exactly the schema of ``esmd.db.tables``, on both databases,
and an existing 0001 database upgrades to head with its rows kept."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from esmd.config import Settings
from esmd.db.engine import make_engine
from esmd.db.tables import metadata
from esmd.setup import alembic_config, head_revision, initialise


def test_migrations_match_the_models_and_upgrade_old_databases(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.begin() as connection:
            command.upgrade(alembic_config(connection), "0001")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO agents (agent_id, secret_hash, hostname, os, os_version, "
                    "agent_version, ips, enrolled_at, modules, outbox_depth, events_dropped) "
                    "VALUES ('a', 'h', 'old', '', '', '', '[]', '2026-01-01 00:00:00', '[]', 0, 0)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO events (id, agent_id, hostname, time, received_at, module, "
                    "severity, action, process_path, cmdline, details) VALUES "
                    "('00000000-0000-4000-8000-000000000001', 'a', 'old', '2026-01-01 00:00:00',"
                    " '2026-01-01 00:00:00', 'malware', 'high', 'killed', '/x', '', '{}')"
                )
            )
        settings = Settings(data_dir=tmp_path / "esm", database_url=database_url)
        assert initialise(settings, "admin", "a long password").revision == head_revision()
        with engine.connect() as connection:
            status = connection.execute(text("SELECT status, comment FROM events")).one()
            assert tuple(status) == ("new", "")
            diff = compare_metadata(
                MigrationContext.configure(connection, opts={"compare_type": True}), metadata
            )
        assert diff == []
        # R19: the audit log is append-only in the database itself.
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, target, detail) "
                    "VALUES ('2026-01-01 00:00:00', 'x', 'y', 'z', '{}')"
                )
            )
        for statement in ("UPDATE audit_log SET actor = 'forged'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
        with engine.connect() as connection:
            actors = connection.execute(text("SELECT actor FROM audit_log")).scalars().all()
        assert "forged" not in actors and "x" in actors
    finally:
        engine.dispose()

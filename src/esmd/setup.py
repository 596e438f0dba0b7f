"""``esmd init``: create or upgrade the schema (Alembic) and the first superuser."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, select
from sqlalchemy.engine import make_url

from esmd.config import Settings
from esmd.db.engine import Database, make_engine
from esmd.db.tables import USERS
from esmd.security import hash_password
from esmd.services.policies import create_default_policies
from esmd.timeutil import utcnow
from trapsapi.enums import Role
from trapsapi.errors import TrapsError, UsageError

log = logging.getLogger(__name__)
MIN_PASSWORD_LENGTH = 8
MAX_USERNAME_LENGTH = 128

PasswordSource = str | Callable[[], str]


class SchemaError(TrapsError):
    """The database has no schema, or one this esmd does not know."""


@dataclass(frozen=True)
class InitResult:
    database: str
    revision: str
    user_created: bool


def describe_url(url: str) -> str:
    """The database URL without its password, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", "esmd:migrations")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        revision: str | None = MigrationContext.configure(connection).get_current_revision()
        return revision


def check_schema(engine: Engine) -> None:
    """Raise SchemaError unless the schema is initialised and at this esmd's revision."""
    where = describe_url(str(engine.url))
    if engine.url.get_backend_name() == "sqlite":
        path = engine.url.database
        if path and path != ":memory:" and not os.path.exists(path):
            raise SchemaError(f"no database at {path}: run `esmd init` first")
    revision = current_revision(engine)
    if revision is None:
        raise SchemaError(f"database {where} is not initialised: run `esmd init` first")
    if revision != head_revision():
        raise SchemaError(
            f"database {where} has schema revision {revision}, this esmd needs "
            f"{head_revision()}: run `esmd init` to upgrade"
        )


def migrate(engine: Engine) -> str:
    """Upgrade the schema to the newest revision; returns it."""
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "head")
    return head_revision()


def validate_username(username: str) -> str:
    name = username.strip()
    if not name or len(name) > MAX_USERNAME_LENGTH or any(ch.isspace() for ch in name):
        raise UsageError(
            f"invalid user name {username!r}: 1 to {MAX_USERNAME_LENGTH} characters, no spaces"
        )
    return name


def validate_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise UsageError("the password must have at most 1024 characters")
    return password


def user_exists(db: Database, username: str) -> bool:
    with db.read() as connection:
        found = connection.execute(select(USERS.c.id).where(USERS.c.username == username))
        return found.first() is not None


def create_user(
    settings: Settings, username: str, password: PasswordSource, role: Role = Role.VIEWER
) -> bool:
    """Create a user (a viewer unless told otherwise) in an initialised database.

    True if it was created, False if a user of that name exists (it is left unchanged).
    """
    engine = make_engine(settings.url, pool_size=1)
    try:
        check_schema(engine)
        return add_user(Database(engine), username, password, role)
    finally:
        engine.dispose()


def add_user(db: Database, username: str, password: PasswordSource, role: Role) -> bool:
    """Create a user unless one of that name exists; True if it was created.

    ``password`` may be a callable, asked only when the user must really be created (so
    ``esmd init`` run twice never prompts for a password it would not use).
    """
    username = validate_username(username)
    if user_exists(db, username):
        return False
    plain = validate_password(password() if callable(password) else password)
    hashed = hash_password(plain)
    with db.write() as connection:
        connection.execute(
            USERS.insert().values(
                username=username, password_hash=hashed, role=role.value, created_at=utcnow()
            )
        )
    return True


def _prepare_data_dir(settings: Settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def _secure_sqlite_file(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        for suffix in ("", "-wal", "-shm"):
            path = f"{parsed.database}{suffix}"
            if os.path.exists(path):
                os.chmod(path, 0o600)


def initialise(settings: Settings, admin_user: str, admin_password: PasswordSource) -> InitResult:
    """Create the data dir, migrate the schema to head, create the superuser if missing.

    Safe to run again: an up-to-date schema and an existing user are left unchanged.
    """
    admin_user = validate_username(admin_user)
    if not callable(admin_password):
        validate_password(admin_password)
    _prepare_data_dir(settings)
    engine = make_engine(settings.url, pool_size=1)
    try:
        before = current_revision(engine)
        revision = migrate(engine)
        _secure_sqlite_file(settings.url)
        where = describe_url(settings.url)
        if before == revision:
            log.info("schema of %s is up to date (revision %s)", where, revision)
        else:
            log.info("schema of %s migrated from %s to %s", where, before or "empty", revision)
        created = add_user(Database(engine), admin_user, admin_password, Role.SUPERUSER)
        if create_default_policies(Database(engine)):
            log.info("default policy created (see docs/policies.md)")
        if created:
            log.info("superuser %r created", admin_user)
        else:
            log.info("user %r already exists; left unchanged", admin_user)
        return InitResult(database=where, revision=revision, user_created=created)
    finally:
        engine.dispose()

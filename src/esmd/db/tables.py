"""The tables, as SQLModel classes (admin CRUD uses them; hot paths use their Core ``Table``).

The Alembic revisions under ``esmd/migrations`` create exactly this schema;
``tests/esmd/test_migrations.py`` fails when the two drift apart.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    Uuid,
)
from sqlmodel import Field, SQLModel

from esmd.db.types import UTCDateTime

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _time(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _bigint(*, nullable: bool) -> Any:
    return Field(default=None if nullable else 0, sa_column=Column(BigInteger, nullable=nullable))


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=128, unique=True)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=32)
    created_at: datetime = _time()


class AdminSession(SQLModel, table=True):
    """A login: the bearer token is stored only as its SHA-256."""

    __tablename__ = "admin_sessions"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    created_at: datetime = _time()
    expires_at: datetime = _time(index=True)
    revoked: bool = False


class LoginFailure(SQLModel, table=True):
    __tablename__ = "login_failures"
    __table_args__ = (Index(None, "username", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=128)
    at: datetime = _time()
    source_ip: str | None = Field(default=None, max_length=64)


class EnrollmentToken(SQLModel, table=True):
    __tablename__ = "enrollment_tokens"

    id: str = Field(max_length=32, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    label: str = Field(default="", max_length=255)
    created_at: datetime = _time()
    expires_at: datetime = _time()
    max_uses: int = 1
    uses: int = 0
    revoked: bool = False
    created_by: str = Field(max_length=128)


class Agent(SQLModel, table=True):
    __tablename__ = "agents"

    agent_id: str = Field(max_length=36, primary_key=True)
    secret_hash: str = Field(max_length=64)
    hostname: str = Field(max_length=255, index=True)
    os: str = Field(default="", max_length=255)
    os_version: str = Field(default="", max_length=255)
    agent_version: str = Field(default="", max_length=255)
    ips: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    enrolled_at: datetime = _time()
    enrollment_token_id: str | None = Field(default=None, max_length=32)
    last_checkin_at: datetime | None = _time(nullable=True, index=True)
    modules: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    footprint: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    policy_version: int | None = _bigint(nullable=True)
    outbox_depth: int = _bigint(nullable=False)
    events_dropped: int = _bigint(nullable=False)
    # Lifecycle (revision 0004): credential rotation, clone detection, health issues.
    next_secret_hash: str | None = Field(default=None, max_length=64)
    instance_id: str | None = Field(default=None, max_length=64)
    previous_instance_id: str | None = Field(default=None, max_length=64)
    instance_changed_at: datetime | None = _time(nullable=True)
    identity_conflict_at: datetime | None = _time(nullable=True)
    stopped_at: datetime | None = _time(nullable=True)
    # Set by succeeded isolate/unisolate/uninstall actions (revision 0010).
    isolated_at: datetime | None = _time(nullable=True)
    uninstalled_at: datetime | None = _time(nullable=True)
    issues: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
    )
    # Policy targeting and drift (revision 0006_policies).
    labels: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    group_name: str | None = Field(default=None, max_length=64, index=True)
    policy_served_version: int | None = _bigint(nullable=True)
    """The version the last check-in answered with."""
    policy_expected_version: int | None = _bigint(nullable=True)
    """The version served before the last report: what ``policy_version`` should be."""


class Event(SQLModel, table=True):
    """A security event; (agent_id, id) is the idempotency key of the ingest."""

    __tablename__ = "events"
    __table_args__ = (
        UniqueConstraint("agent_id", "id"),
        Index(None, "agent_id", "time"),
    )

    seq: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    id: uuid.UUID = Field(sa_column=Column(Uuid(), nullable=False))
    agent_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("agents.agent_id", ondelete="CASCADE"), nullable=False
        )
    )
    hostname: str = Field(max_length=255)
    time: datetime = _time()  # indexed in tables_filters (with included columns)
    received_at: datetime = _time()
    module: str = Field(max_length=255)  # indexed with time (tables_filters)
    severity: str = Field(max_length=16, index=True)
    action: str = Field(max_length=16)
    process_path: str = Field(max_length=8192)
    sha256: str | None = Field(default=None, max_length=64, index=True)
    pid: int | None = _bigint(nullable=True)
    ppid: int | None = _bigint(nullable=True)
    parent_path: str | None = Field(default=None, max_length=8192)
    user: str | None = Field(default=None, max_length=255)
    uid: int | None = _bigint(nullable=True)
    cmdline: str = Field(default="", max_length=8192)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # Triage (revision 0002); the ingest leaves them at their defaults.
    status: str = Field(
        default="new",
        sa_column=Column(String(16), nullable=False, default="new", server_default="new"),
    )
    assignee: str | None = Field(default=None, max_length=128)
    comment: str = Field(
        default="",
        sa_column=Column(String(4096), nullable=False, default="", server_default=""),
    )


class HashVerdict(SQLModel, table=True):
    __tablename__ = "hash_verdicts"

    sha256: str = Field(max_length=64, primary_key=True)
    verdict: str = Field(max_length=16, index=True)
    source: str = Field(default="admin", max_length=32)
    comment: str = Field(default="", max_length=1024)
    updated_at: datetime = _time()
    updated_by: str = Field(max_length=128)


class PolicyState(SQLModel, table=True):
    """One row (id 1): the global policy version, bumped in the transaction of every change."""

    __tablename__ = "policy_state"

    id: int = Field(default=1, primary_key=True)
    version: int = 1


class AuditEntry(SQLModel, table=True):
    """Who changed what, when: one row per admin change."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    at: datetime = _time(index=True)
    actor: str = Field(max_length=128, index=True)
    action: str = Field(max_length=64)
    target: str = Field(default="", max_length=255)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    source_ip: str | None = Field(default=None, max_length=64)


class ApiToken(SQLModel, table=True):
    """A long-lived bearer token for scripts, acting as one user; stored as its SHA-256."""

    __tablename__ = "api_tokens"

    id: str = Field(max_length=32, primary_key=True)
    name: str = Field(max_length=255)
    token_hash: str = Field(max_length=64, unique=True)
    user_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    created_at: datetime = _time()
    created_by: str = Field(max_length=128)
    expires_at: datetime | None = _time(nullable=True)
    revoked: bool = False
    last_used_at: datetime | None = _time(nullable=True)


def table(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of a table model (typed, for Core statements on hot paths)."""
    result: Table = model.__table__  # type: ignore[attr-defined]
    return result


USERS = table(User)
ADMIN_SESSIONS = table(AdminSession)
LOGIN_FAILURES = table(LoginFailure)
ENROLLMENT_TOKENS = table(EnrollmentToken)
AGENTS = table(Agent)
EVENTS = table(Event)
HASH_VERDICTS = table(HashVerdict)
POLICY_STATE = table(PolicyState)
AUDIT_LOG = table(AuditEntry)
API_TOKENS = table(ApiToken)
metadata = SQLModel.metadata


class HashIntel(SQLModel, table=True):
    """A verdict from a source other than an admin: a feed (``feed:<name>``) or agents."""

    __tablename__ = "hash_intel"

    sha256: str = Field(max_length=64, primary_key=True)
    source: str = Field(max_length=80, primary_key=True, index=True)
    verdict: str = Field(max_length=16)
    comment: str = Field(default="", max_length=1024)
    updated_at: datetime = _time()


HASH_INTEL = table(HashIntel)

# Tables and indexes of other modules, on the same MetaData (imported last: they use ``table``).
from esmd.db import tables_actions, tables_filters, tables_ops, tables_policies  # noqa: E402

EXTENSIONS = (tables_actions, tables_filters, tables_ops, tables_policies)
from esmd.db.tables_forensics import FORENSIC_BUNDLES as FORENSIC_BUNDLES  # noqa: E402
from esmd.db.tables_servers import SERVERS as SERVERS  # noqa: E402  (same metadata)

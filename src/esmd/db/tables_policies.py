"""The policy tables (revision 0006_policies), on the same MetaData as :mod:`esmd.db.tables`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, Table
from sqlmodel import Field, SQLModel

from esmd.db.types import UTCDateTime

_BigId = BigInteger().with_variant(Integer(), "sqlite")


def _time(*, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=False, index=index))


class Policy(SQLModel, table=True):
    """A named policy: targets and rules as canonical JSON (unset rules left out)."""

    __tablename__ = "policies"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    description: str = Field(default="", max_length=1024)
    priority: int = 0
    enabled: bool = True
    targets: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    rules: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()
    updated_by: str = Field(max_length=128)


class PolicyHistory(SQLModel, table=True):
    """One row per policy version made by a policy change: who, when, what, and a snapshot."""

    __tablename__ = "policy_history"

    id: int | None = Field(default=None, sa_column=Column(_BigId, primary_key=True))
    version: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    at: datetime = _time()
    actor: str = Field(max_length=128)
    action: str = Field(max_length=32)
    policy: str = Field(default="", max_length=255)
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    snapshot: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )


def _table(model: type[SQLModel]) -> Table:
    result: Table = model.__table__  # type: ignore[attr-defined]
    return result


POLICIES = _table(Policy)
POLICY_HISTORY = _table(PolicyHistory)

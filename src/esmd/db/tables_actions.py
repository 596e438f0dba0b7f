"""Tables of the action centre (same MetaData as :mod:`esmd.db.tables`; revision 0007_actions).

``action_agents`` has one row per (action, agent); its index on (agent_id, state) makes the
check-in's "anything pending for me?" one cheap index probe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, LargeBinary, String
from sqlmodel import Field, SQLModel

from esmd.db.tables import BigId, table
from esmd.db.types import UTCDateTime


def _time(*, nullable: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable))


class Action(SQLModel, table=True):
    __tablename__ = "actions"

    id: str = Field(max_length=32, primary_key=True)
    type: str = Field(max_length=32, index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    target: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    comment: str = Field(default="", max_length=1024)
    created_by: str = Field(max_length=128)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    cancelled: bool = False
    agent_count: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))


class ActionAgent(SQLModel, table=True):
    """One action on one agent: its state, timestamps and result."""

    __tablename__ = "action_agents"
    __table_args__ = (Index(None, "agent_id", "state"),)

    action_id: str = Field(
        sa_column=Column(String(32), ForeignKey("actions.id", ondelete="CASCADE"), primary_key=True)
    )
    agent_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("agents.agent_id", ondelete="CASCADE"), primary_key=True
        )
    )
    state: str = Field(max_length=16)
    delivered_at: datetime | None = _time(nullable=True)
    finished_at: datetime | None = _time(nullable=True)
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    detail: str = Field(default="", max_length=1024)


class ActionBlob(SQLModel, table=True):
    """A file an agent uploaded for an action (retrieve_logs: a gzip bundle), size-capped."""

    __tablename__ = "action_blobs"

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True))
    action_id: str = Field(
        sa_column=Column(
            String(32), ForeignKey("actions.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    agent_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("agents.agent_id", ondelete="CASCADE"), nullable=False
        )
    )
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


ACTIONS = table(Action)
ACTION_AGENTS = table(ActionAgent)
ACTION_BLOBS = table(ActionBlob)

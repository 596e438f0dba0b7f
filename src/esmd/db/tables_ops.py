"""Tables of the operations side: the export cursor of each SIEM sink, and the index retention
walks. They share ``SQLModel.metadata`` with :mod:`esmd.db.tables` (which imports this module
at its end, so that the metadata is always complete)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel

from esmd.db.tables import LOGIN_FAILURES, table
from esmd.db.types import UTCDateTime


class ExportCursor(SQLModel, table=True):
    """How far one sink got: the last exported ``events.seq``, advanced only after delivery."""

    __tablename__ = "export_cursors"

    sink: str = Field(sa_column=Column(String(64), primary_key=True))
    last_seq: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    last_received_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    exported: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


EXPORT_CURSORS = table(ExportCursor)
# Login throttling counts failures per user name and source address.
LOGIN_FAILURES_SOURCE = Index(
    "ix_login_failures_username_source_ip_at",
    LOGIN_FAILURES.c.username,
    LOGIN_FAILURES.c.source_ip,
    LOGIN_FAILURES.c.at,
)

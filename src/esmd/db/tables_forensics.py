"""Forensic bundles agents uploaded (revision 0011_forensics).

The gzip content is a column of the row, not a file under the data directory: several esmd
processes on one PostgreSQL (possibly on different hosts) must all serve every bundle, a
row and its content commit or vanish together (no orphan files after a crash or a
retention pass), and a database backup holds everything. Bundles are small (at most
``MAX_FORENSIC_BYTES``); PostgreSQL keeps large ``bytea`` values out of line (TOAST) and SQLite
keeps the content, the last column, on overflow pages, so listing reads no content.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from esmd.db.tables import table
from esmd.db.types import UTCDateTime


class ForensicBundleRow(SQLModel, table=True):
    __tablename__ = "forensic_bundles"
    __table_args__ = (
        UniqueConstraint("agent_id", "bundle_id"),
        Index(None, "received_at", "id"),
    )

    id: str = Field(max_length=32, primary_key=True)
    agent_id: str = Field(
        sa_column=Column(
            String(36), ForeignKey("agents.agent_id", ondelete="CASCADE"), nullable=False
        )
    )
    bundle_id: str = Field(max_length=64)
    event_id: str | None = Field(default=None, max_length=36, index=True)
    action_id: str | None = Field(default=None, max_length=32)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    received_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


FORENSIC_BUNDLES = table(ForensicBundleRow)

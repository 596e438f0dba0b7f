"""The communication-server registry (``servers``): one heartbeat row per esmd process.

Revision ID: 0009_servers
Revises: 0008_filters
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_servers"
down_revision: str | None = "0008_filters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "servers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("address", sa.String(1024), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_at", Time, nullable=False),
        sa.Column("last_seen", Time, nullable=False),
        sa.Column("agents_served", sa.BigInteger(), nullable=False),
        sa.Column("requests_per_s", sa.Float(), nullable=False),
        sa.Column("heartbeat_s", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_servers"),
    )
    op.create_index("ix_servers_last_seen", "servers", ["last_seen"])


def downgrade() -> None:
    op.drop_index("ix_servers_last_seen", table_name="servers")
    op.drop_table("servers")

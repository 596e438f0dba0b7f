"""Forensic bundles uploaded by agents (content in the row: see esmd.db.tables_forensics).

Revision ID: 0011_forensics
Revises: 0010_agent_isolation
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_forensics"
down_revision: str | None = "0010_agent_isolation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "forensic_bundles",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("bundle_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=True),
        sa.Column("action_id", sa.String(32), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("received_at", Time, nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.agent_id"],
            name="fk_forensic_bundles_agent_id_agents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_forensic_bundles"),
        sa.UniqueConstraint("agent_id", "bundle_id", name="uq_forensic_bundles_agent_id_bundle_id"),
    )
    op.create_index("ix_forensic_bundles_event_id", "forensic_bundles", ["event_id"])
    op.create_index("ix_forensic_bundles_received_at_id", "forensic_bundles", ["received_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_forensic_bundles_received_at_id", "forensic_bundles")
    op.drop_index("ix_forensic_bundles_event_id", "forensic_bundles")
    op.drop_table("forensic_bundles")

"""Agent lifecycle: credential rotation, clone detection, stop notice and health issues.

Revision ID: 0004_agent_lifecycle
Revises: 0003_hashes
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_agent_lifecycle"
down_revision: str | None = "0003_hashes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("next_secret_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("instance_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("previous_instance_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("instance_changed_at", Time, nullable=True))
        batch.add_column(sa.Column("identity_conflict_at", Time, nullable=True))
        batch.add_column(sa.Column("stopped_at", Time, nullable=True))
        batch.add_column(sa.Column("issues", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        for name in (
            "issues",
            "stopped_at",
            "identity_conflict_at",
            "instance_changed_at",
            "previous_instance_id",
            "instance_id",
            "next_secret_hash",
        ):
            batch.drop_column(name)

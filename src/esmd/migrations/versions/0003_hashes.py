"""Hash intelligence: verdicts from feeds and agents beside the admin overrides.

Revision ID: 0003_hashes
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_hashes"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hash_intel",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("source", sa.String(80), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("comment", sa.String(1024), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "source", name="pk_hash_intel"),
    )
    op.create_index("ix_hash_intel_source", "hash_intel", ["source"])


def downgrade() -> None:
    op.drop_index("ix_hash_intel_source", "hash_intel")
    op.drop_table("hash_intel")

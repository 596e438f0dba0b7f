"""Policies: named, targeted policies with a history of versions; agent labels and group;
what each agent was served (for policy drift).

Revision ID: 0006_policies
Revises: 0005_ops
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_policies"
down_revision: str | None = "0005_ops"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policies"),
        sa.UniqueConstraint("name", name="uq_policies_name"),
    )
    op.create_table(
        "policy_history",
        sa.Column("id", BigId, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("at", Time, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("policy", sa.String(255), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_policy_history"),
    )
    op.create_index("ix_policy_history_version", "policy_history", ["version"])
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("labels", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("group_name", sa.String(64), nullable=True))
        batch.add_column(sa.Column("policy_served_version", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("policy_expected_version", sa.BigInteger(), nullable=True))
    op.create_index("ix_agents_group_name", "agents", ["group_name"])


def downgrade() -> None:
    op.drop_index("ix_agents_group_name", table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("policy_expected_version")
        batch.drop_column("policy_served_version")
        batch.drop_column("group_name")
        batch.drop_column("labels")
    op.drop_index("ix_policy_history_version", table_name="policy_history")
    op.drop_table("policy_history")
    op.drop_table("policies")

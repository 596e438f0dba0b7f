"""The action centre: actions, their per-agent states and results, log uploads.

Revision ID: 0007_actions
Revises: 0006_policies
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_actions"
down_revision: str | None = "0006_policies"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("comment", sa.String(1024), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("expires_at", Time, nullable=False),
        sa.Column("cancelled", sa.Boolean(), nullable=False),
        sa.Column("agent_count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_actions"),
    )
    op.create_index("ix_actions_type", "actions", ["type"])
    op.create_index("ix_actions_created_at", "actions", ["created_at"])
    op.create_index("ix_actions_expires_at", "actions", ["expires_at"])
    op.create_table(
        "action_agents",
        sa.Column("action_id", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("delivered_at", Time, nullable=True),
        sa.Column("finished_at", Time, nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("detail", sa.String(1024), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["actions.id"],
            name="fk_action_agents_action_id_actions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.agent_id"],
            name="fk_action_agents_agent_id_agents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("action_id", "agent_id", name="pk_action_agents"),
    )
    op.create_index("ix_action_agents_agent_id_state", "action_agents", ["agent_id", "state"])
    op.create_table(
        "action_blobs",
        sa.Column("id", BigId, nullable=False),
        sa.Column("action_id", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(36), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", Time, nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["actions.id"],
            name="fk_action_blobs_action_id_actions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["agents.agent_id"],
            name="fk_action_blobs_agent_id_agents",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_action_blobs"),
    )
    op.create_index("ix_action_blobs_action_id", "action_blobs", ["action_id"])


def downgrade() -> None:
    op.drop_index("ix_action_blobs_action_id", "action_blobs")
    op.drop_table("action_blobs")
    op.drop_index("ix_action_agents_agent_id_state", "action_agents")
    op.drop_table("action_agents")
    op.drop_index("ix_actions_expires_at", "actions")
    op.drop_index("ix_actions_created_at", "actions")
    op.drop_index("ix_actions_type", "actions")
    op.drop_table("actions")

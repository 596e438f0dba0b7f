"""Operations: export cursors of SIEM sinks, the retention index on events.received_at, and
the source address of failed logins (throttling per user name and address).

Revision ID: 0005_ops
Revises: 0004_agent_lifecycle
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_ops"
down_revision: str | None = "0004_agent_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "export_cursors",
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_received_at", Time, nullable=True),
        sa.Column("exported", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", Time, nullable=False),
        sa.PrimaryKeyConstraint("sink", name="pk_export_cursors"),
    )
    op.create_index("ix_events_received_at", "events", ["received_at"])
    with op.batch_alter_table("login_failures") as batch:
        batch.add_column(sa.Column("source_ip", sa.String(64), nullable=True))
    op.create_index(
        "ix_login_failures_username_source_ip_at",
        "login_failures",
        ["username", "source_ip", "at"],
    )


def downgrade() -> None:
    op.drop_index("ix_login_failures_username_source_ip_at", table_name="login_failures")
    with op.batch_alter_table("login_failures") as batch:
        batch.drop_column("source_ip")
    op.drop_index("ix_events_received_at", table_name="events")
    op.drop_table("export_cursors")

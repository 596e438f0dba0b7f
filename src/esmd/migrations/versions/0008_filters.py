"""Filters: an index on events (received_at, seq) for following new events in order; it also
serves retention and export, so it replaces the single-column index of 0005_ops.

Revision ID: 0008_filters
Revises: 0007_actions
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008_filters"
down_revision: str | None = "0007_actions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_received_at_seq", "events", ["received_at", "seq"])
    op.drop_index("ix_events_received_at", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.drop_index("ix_events_received_at_seq", "events")

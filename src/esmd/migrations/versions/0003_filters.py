"""Filters: an index on events (received_at, seq) for following new events in order.

Revision ID: 0003_filters
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_filters"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_events_received_at_seq", "events", ["received_at", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_received_at_seq", "events")

"""Agent states set by actions: isolated (until un-isolated) and uninstalled.

Revision ID: 0010_agent_isolation
Revises: 0009_servers
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_agent_isolation"
down_revision: str | None = "0009_servers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("isolated_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("uninstalled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("uninstalled_at")
        batch.drop_column("isolated_at")

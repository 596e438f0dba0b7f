"""List indexes for large tables: events by module / triage status / assignee followed by
their sort key (time, seq), so a filtered page and a keyset page at any depth are one index
range scan; the audit log by action; actions by creator.

Revision ID: 0012_list_indexes
Revises: 0011_forensics
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_list_indexes"
down_revision: str | None = "0011_forensics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ASSIGNED = sa.text("assignee IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_events_module_time_seq", "events", ["module", "time", "seq"])
    op.drop_index("ix_events_module", table_name="events")
    op.create_index("ix_events_status_time_seq", "events", ["status", "time", "seq"])
    op.drop_index("ix_events_status", table_name="events")
    op.create_index(
        "ix_events_assignee_time",
        "events",
        ["assignee", "time"],
        postgresql_where=_ASSIGNED,
        sqlite_where=_ASSIGNED,
    )
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_index("ix_actions_created_by", "actions", ["created_by"])


def downgrade() -> None:
    op.drop_index("ix_actions_created_by", table_name="actions")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_index("ix_events_assignee_time", table_name="events")
    op.create_index("ix_events_status", "events", ["status"])
    op.drop_index("ix_events_status_time_seq", table_name="events")
    op.create_index("ix_events_module", "events", ["module"])
    op.drop_index("ix_events_module_time_seq", table_name="events")

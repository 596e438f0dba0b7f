"""Indexes for the list filters of the console and dashboard (revision 0003_filters).

``events.received_at`` orders ``trapsctl events watch``: it follows new events by the time the
ESM received them (agent clocks may lag), so each poll is an index range scan.

Revision 0012_list_indexes: an equality filter followed by the list's sort key (time, seq),
so a filtered page, and a keyset page at any depth, is one index range scan in order instead
of reading every matching row and sorting them; assignee only where one is set (most events
have none); the audit log by action and actions by creator.

Revision 0013_event_counts: on PostgreSQL the time index includes module, severity and
status, so the dashboard's 24-hour counts are an index-only scan. SQLite keeps the plain one:
its index on time is really (time, rowid = seq), the events lists' whole sort key, which
extra key columns would break (page 1,000 by offset: 8 ms → 87 ms at 1M) for no gain in the
counts (37 ms → 36 ms).
"""

from __future__ import annotations

from sqlalchemy import Index

from esmd.db.tables import AUDIT_LOG, EVENTS
from esmd.db.tables_actions import ACTIONS

EVENTS_TIME = Index(None, EVENTS.c.time, postgresql_include=["module", "severity", "status"])
EVENTS_RECEIVED_AT = Index(None, EVENTS.c.received_at, EVENTS.c.seq)
EVENTS_MODULE = Index(None, EVENTS.c.module, EVENTS.c.time, EVENTS.c.seq)
EVENTS_STATUS = Index(None, EVENTS.c.status, EVENTS.c.time, EVENTS.c.seq)
_ASSIGNED = EVENTS.c.assignee.isnot(None)
EVENTS_ASSIGNEE = Index(
    None,
    EVENTS.c.assignee,
    EVENTS.c.time,
    postgresql_where=_ASSIGNED,
    sqlite_where=_ASSIGNED,
)
AUDIT_ACTION = Index(None, AUDIT_LOG.c.action)
ACTIONS_CREATED_BY = Index(None, ACTIONS.c.created_by)

"""Indexes for the list filters of the console and dashboard (revision 0003_filters).

``events.received_at`` orders ``trapsctl events watch``: it follows new events by the time the
ESM received them (agent clocks may lag), so each poll is an index range scan.
"""

from __future__ import annotations

from sqlalchemy import Index

from esmd.db.tables import EVENTS

EVENTS_RECEIVED_AT = Index(None, EVENTS.c.received_at, EVENTS.c.seq)

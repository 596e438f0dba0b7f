"""Resolving an action's target (an agent, a label, a query) to agent IDs, at creation time."""

from __future__ import annotations

import fnmatch
from datetime import datetime

from sqlalchemy import Connection, or_, select

from esmd.config import Settings
from esmd.db.tables import AGENTS
from esmd.errors import BadRequest, NotFound
from esmd.services.agents import connected_since
from trapsapi.enums import Health
from trapsapi.models_actions import ActionTarget

MAX_TARGETS = 50_000


def resolve(
    connection: Connection, target: ActionTarget, settings: Settings, now: datetime
) -> list[str]:
    """The agent IDs the target names now (sorted); an empty or unknown target is refused."""
    if target.agent_id is not None:
        found = connection.execute(
            select(AGENTS.c.agent_id).where(AGENTS.c.agent_id == target.agent_id)
        ).scalar()
        if found is None:
            raise NotFound(f"no agent {target.agent_id!r}")
        return [found]
    if target.label is not None:
        return _bounded(_labelled(connection, target.label))
    query = target.query
    assert query is not None  # ActionTarget guarantees exactly one
    statement = select(AGENTS.c.agent_id, AGENTS.c.hostname)
    if query.os is not None:
        statement = statement.where(AGENTS.c.os == query.os)
    if query.health is not None:
        since = connected_since(settings, now)
        last = AGENTS.c.last_checkin_at
        if query.health is Health.CONNECTED:
            statement = statement.where(last > since)
        else:
            statement = statement.where(or_(last.is_(None), last <= since))
    rows = connection.execute(statement).all()
    if query.hostname is not None:
        pattern = query.hostname.lower()
        rows = [r for r in rows if fnmatch.fnmatchcase(r.hostname.lower(), pattern)]
    if not rows:
        raise BadRequest("target.query: no agent matches")
    return _bounded(sorted(r.agent_id for r in rows))


def _labelled(connection: Connection, label: str) -> list[str]:
    """Agents whose ``labels`` (the JSON list of the agents table) include ``label``."""
    labels = AGENTS.c.get("labels")
    if labels is None:
        raise BadRequest("target.label: this server keeps no agent labels")
    rows = connection.execute(select(AGENTS.c.agent_id, labels)).all()
    ids = sorted(r[0] for r in rows if label in (r[1] or []))
    if not ids:
        raise BadRequest(f"target.label: no agent has the label {label!r}")
    return ids


def _bounded(ids: list[str]) -> list[str]:
    if len(ids) > MAX_TARGETS:
        raise BadRequest(f"target: {len(ids)} agents; at most {MAX_TARGETS} per action")
    return ids

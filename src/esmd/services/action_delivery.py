"""The action centre, agent side: delivery in the check-in, results and uploads (logs here,
forensic bundles in :mod:`esmd.services.forensics`, through the same checks); and the
server-side quarantine view built from results.

Delivery is on the check-in hot path: the check-in's UPDATE returns ``HAS_PENDING``, an
indexed EXISTS on ``action_agents (agent_id, state)``, so an agent with nothing pending costs
no extra statement; with pending rows, one SELECT and one UPDATE (two when some have
expired), all in the check-in's transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.db.tables_actions import ACTION_AGENTS, ACTION_BLOBS, ACTIONS
from esmd.errors import BadRequest, Conflict, NotFound
from esmd.services.agents import AgentIdentity
from esmd.services.audit import audit
from esmd.services.storable import check_storable
from esmd.timeutil import as_utc, utcnow
from trapsapi.enums_actions import REPORTED_STATES, ActionState, ActionType
from trapsapi.models import Page
from trapsapi.models_actions import (
    MAX_LOG_BYTES,
    MAX_RESULT_BYTES,
    ActionResult,
    ActionResultAck,
    LogBundle,
    LogUpload,
    LogUploadAck,
    QuarantineEntry,
)

HAS_PENDING = (
    select(ACTION_AGENTS.c.action_id)
    .where(ACTION_AGENTS.c.agent_id == AGENTS.c.agent_id, ACTION_AGENTS.c.state == "pending")
    .exists()
    .label("has_pending")
)
"""For the check-in's UPDATE … RETURNING: whether the agent has anything pending."""
_PENDING = (
    select(
        ACTION_AGENTS.c.agent_id,
        ACTION_AGENTS.c.action_id,
        ACTIONS.c.type,
        ACTIONS.c.params,
        ACTIONS.c.expires_at,
    )
    .select_from(ACTION_AGENTS.join(ACTIONS))
    .where(
        ACTION_AGENTS.c.agent_id.in_(bindparam("ids", expanding=True)),
        ACTION_AGENTS.c.state == "pending",
    )
    .order_by(ACTIONS.c.created_at, ACTION_AGENTS.c.action_id)
)
_MARK = (
    update(ACTION_AGENTS)
    .where(
        ACTION_AGENTS.c.agent_id.in_(bindparam("b_agents", expanding=True)),
        ACTION_AGENTS.c.action_id.in_(bindparam("b_actions", expanding=True)),
        ACTION_AGENTS.c.state == "pending",
    )
    .values(
        state=bindparam("b_state"),
        delivered_at=bindparam("b_delivered_at"),
        finished_at=bindparam("b_finished_at"),
    )
)


def deliver(connection: Connection, agent_id: str, now: datetime) -> list[dict[str, Any]]:
    """The agent's pending, unexpired actions, now marked delivered (expired ones expired)."""
    return deliver_many(connection, [agent_id], now).get(agent_id, [])


def deliver_many(
    connection: Connection, agent_ids: list[str], now: datetime
) -> dict[str, list[dict[str, Any]]]:
    """The pending, unexpired actions of these agents, now marked delivered (expired ones
    expired): the check-in's for one agent, the wake channel's for a batch."""
    rows = connection.execute(_PENDING, {"ids": agent_ids}).all()
    if not rows:
        return {}
    live = [r for r in rows if as_utc(r.expires_at) > now]
    dead = [r for r in rows if as_utc(r.expires_at) <= now]
    for chosen, state, delivered, finished in (
        (live, "delivered", now, None),
        (dead, "expired", None, now),
    ):
        if chosen:
            # Every pending row of these agents for these actions is exactly what was read.
            connection.execute(
                _MARK,
                {
                    "b_agents": sorted({r.agent_id for r in chosen}),
                    "b_actions": sorted({r.action_id for r in chosen}),
                    "b_state": state,
                    "b_delivered_at": delivered,
                    "b_finished_at": finished,
                },
            )
    actions: dict[str, list[dict[str, Any]]] = {}
    for r in live:
        actions.setdefault(r.agent_id, []).append(
            {
                "id": r.action_id,
                "type": r.type,
                "params": r.params,
                "expires_at": as_utc(r.expires_at).isoformat(),
            }
        )
    return actions


def _row(connection: Connection, action_id: str, agent_id: str) -> Any:
    """The action on this agent; another agent's action is "not found", like a missing one."""
    row = connection.execute(
        select(ACTION_AGENTS, ACTIONS.c.type)
        .select_from(ACTION_AGENTS.join(ACTIONS))
        .where(ACTION_AGENTS.c.action_id == action_id, ACTION_AGENTS.c.agent_id == agent_id)
    ).first()
    if row is None:
        raise NotFound(f"no action {action_id!r} for this agent")
    return row


_AGENT_STATE: dict[str, Callable[[datetime], dict[str, datetime | None]]] = {
    ActionType.ISOLATE.value: lambda now: {"isolated_at": now},
    ActionType.UNISOLATE.value: lambda now: {"isolated_at": None},
    ActionType.UNINSTALL.value: lambda now: {"uninstalled_at": now},
}
"""What a succeeded action changes in the agent's own row (its health shows it)."""


def report_result(
    db: Database, agent: AgentIdentity, action_id: str, body: ActionResult, source_ip: str | None
) -> ActionResultAck:
    """Record the result once; a repeat (at-least-once delivery) is acknowledged unchanged."""
    check_storable(body)
    if len(json.dumps(body.result, separators=(",", ":"))) > MAX_RESULT_BYTES:
        raise BadRequest(f"result: larger than {MAX_RESULT_BYTES} bytes of JSON")
    with db.write_session() as session:
        connection = session.connection()
        row = _row(connection, action_id, agent.agent_id)
        state = ActionState(row.state)
        if state in REPORTED_STATES:
            return ActionResultAck(action_id=action_id, state=state)
        if state is ActionState.CANCELLED:
            raise Conflict(f"action {action_id} was cancelled before delivery")
        connection.execute(
            update(ACTION_AGENTS)
            .where(
                ACTION_AGENTS.c.action_id == action_id,
                ACTION_AGENTS.c.agent_id == agent.agent_id,
            )
            .values(state=body.state, result=body.result, detail=body.detail, finished_at=utcnow())
        )
        if body.state == ActionState.SUCCEEDED.value and row.type in _AGENT_STATE:
            connection.execute(
                update(AGENTS)
                .where(AGENTS.c.agent_id == agent.agent_id)
                .values(_AGENT_STATE[row.type](utcnow()))
            )
        audit(
            session,
            f"agent:{agent.agent_id}",
            "action.result",
            action_id,
            {"type": row.type, "state": body.state, "previous": state.value},
            source_ip=source_ip,
        )
    return ActionResultAck(action_id=action_id, state=ActionState(body.state))


def decode_upload(content_b64: str, sha256: str, max_bytes: int) -> bytes:
    """The bytes of an agent's upload (a log or forensic bundle), checked against its hash."""
    try:
        content = base64.b64decode(content_b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("content_b64: not base64") from None
    if len(content) > max_bytes:
        raise BadRequest(f"content_b64: larger than {max_bytes} bytes once decoded")
    if hashlib.sha256(content).hexdigest() != sha256:
        raise BadRequest("sha256: does not match the content")
    return content


def upload_target(connection: Connection, agent_id: str, action_id: str, kind: ActionType) -> Any:
    """The agent's action an upload belongs to, which must be of type ``kind``."""
    row = _row(connection, action_id, agent_id)
    if row.type != kind.value:
        raise Conflict(f"action {action_id} is a {row.type} action, not {kind.value}")
    return row


def upload_logs(
    db: Database, agent: AgentIdentity, action_id: str, body: LogUpload, source_ip: str | None
) -> LogUploadAck:
    """Store the log bundle of a retrieve_logs action (once; a repeat is acknowledged)."""
    content = decode_upload(body.content_b64, body.sha256, MAX_LOG_BYTES)
    with db.write_session() as session:
        connection = session.connection()
        upload_target(connection, agent.agent_id, action_id, ActionType.RETRIEVE_LOGS)
        stored = connection.execute(
            select(ACTION_BLOBS.c.size).where(
                ACTION_BLOBS.c.action_id == action_id, ACTION_BLOBS.c.agent_id == agent.agent_id
            )
        ).scalar()
        if stored is not None:
            return LogUploadAck(action_id=action_id, size=int(stored))
        connection.execute(
            insert(ACTION_BLOBS).values(
                action_id=action_id,
                agent_id=agent.agent_id,
                size=len(content),
                sha256=body.sha256,
                created_at=utcnow(),
                content=content,
            )
        )
        audit(
            session,
            f"agent:{agent.agent_id}",
            "action.logs",
            action_id,
            {"size": len(content), "sha256": body.sha256},
            source_ip=source_ip,
        )
    return LogUploadAck(action_id=action_id, size=len(content))


def download_logs(db: Database, action_id: str, agent_id: str) -> LogBundle:
    with db.read() as connection:
        row = connection.execute(
            select(ACTION_BLOBS).where(
                ACTION_BLOBS.c.action_id == action_id, ACTION_BLOBS.c.agent_id == agent_id
            )
        ).first()
    if row is None:
        raise NotFound(f"no logs of agent {agent_id!r} for action {action_id!r}")
    return LogBundle(
        action_id=action_id,
        agent_id=agent_id,
        size=row.size,
        sha256=row.sha256,
        created_at=as_utc(row.created_at),
        content_b64=base64.b64encode(row.content).decode(),
    )


def quarantine_view(
    db: Database, agent_id: str | None, limit: int, offset: int
) -> Page[QuarantineEntry]:
    """Files reported quarantined by successful actions, minus those restored since."""
    statement = (
        select(
            ACTION_AGENTS.c.action_id,
            ACTION_AGENTS.c.agent_id,
            ACTION_AGENTS.c.result,
            ACTIONS.c.type,
            AGENTS.c.hostname,
        )
        .select_from(ACTION_AGENTS.join(ACTIONS).join(AGENTS))
        .where(
            ACTIONS.c.type.in_([ActionType.QUARANTINE.value, ActionType.RESTORE.value]),
            ACTION_AGENTS.c.state == ActionState.SUCCEEDED.value,
        )
        .order_by(ACTION_AGENTS.c.finished_at)
    )
    if agent_id is not None:
        statement = statement.where(ACTION_AGENTS.c.agent_id == agent_id)
    with db.read() as connection:
        rows = connection.execute(statement).all()
    entries: dict[tuple[str, str], QuarantineEntry] = {}
    for row in rows:
        result = row.result or {}
        if row.type == ActionType.RESTORE.value:
            entries.pop((row.agent_id, str(result.get("quarantine_id"))), None)
            continue
        for item in result.get("quarantined", []):
            try:
                entry = QuarantineEntry(
                    agent_id=row.agent_id,
                    hostname=row.hostname,
                    quarantine_id=item["id"],
                    path=item["path"],
                    sha256=item.get("sha256"),
                    quarantined_at=item["time"],
                    action_id=row.action_id,
                )
            except (KeyError, TypeError, ValueError):
                continue  # a malformed result is shown by `actions show`, not here
            entries[(row.agent_id, entry.quarantine_id)] = entry
    ordered = sorted(entries.values(), key=lambda e: e.quarantined_at, reverse=True)
    return Page[QuarantineEntry](data=ordered[offset : offset + limit], count=len(ordered))

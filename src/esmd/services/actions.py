"""The action centre, admin side: create, list, show, cancel, and expiry.

Expiry is lazy on reads (a pending or delivered row of an expired action is shown expired),
applied for real at the agent's check-in and by :func:`expire_due` (the periodic sweep).
A query or label target is resolved once, when the action is created: agents enrolled or
labelled later are not added.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, and_, case, func, insert, literal, select, update

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.db.tables_actions import ACTION_AGENTS, ACTION_BLOBS, ACTIONS
from esmd.errors import BadRequest, Conflict, NotFound
from esmd.services import paging
from esmd.services.accounts import AdminIdentity
from esmd.services.action_targets import resolve
from esmd.services.audit import audit
from esmd.services.paging import Keyset, SortKey
from esmd.services.storable import check_storable
from esmd.services.wake import notify_agents
from esmd.timeutil import as_utc, parse_since, utcnow
from trapsapi.enums_actions import FINAL_STATES, ActionState, ActionType
from trapsapi.models import Page
from trapsapi.models_actions import (
    PARAMS_MODELS,
    ActionCreate,
    ActionDelivery,
    ActionDetail,
    ActionPublic,
)

log = logging.getLogger(__name__)
OPEN = (ActionState.PENDING.value, ActionState.DELIVERED.value)
SWEEP_INTERVAL_S = 60.0
NEWEST = Keyset(
    "actions.created_at",
    (SortKey(ACTIONS.c.created_at, True, datetime), SortKey(ACTIONS.c.id)),
)


def validate_params(kind: ActionType, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of ``kind`` checked by its model, with defaults filled in (JSON)."""
    try:
        parsed = PARAMS_MODELS[kind].model_validate(params)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in ("params", *error.get("loc", ())))
        if error.get("type") == "extra_forbidden":
            reason = f"unknown parameter for a {kind.value} action"
        else:
            reason = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        raise BadRequest(f"{where}: {reason}") from None
    dumped: dict[str, Any] = parsed.model_dump(mode="json", exclude_none=True)
    return dumped


def _effective_state(now: datetime) -> Any:
    """SQL: the row's state, with an open row of an expired action counted as expired."""
    return case(
        (
            and_(ACTION_AGENTS.c.state.in_(OPEN), ACTIONS.c.expires_at <= now),
            literal(ActionState.EXPIRED.value),
        ),
        else_=ACTION_AGENTS.c.state,
    )


def create(db: Database, settings: Settings, body: ActionCreate, admin: AdminIdentity) -> str:
    check_storable(body)
    params = validate_params(body.type, body.params)
    now = utcnow()
    action_id = uuid.uuid4().hex
    target = body.target.model_dump(mode="json", exclude_none=True)
    with db.write_session() as session:
        connection = session.connection()
        agent_ids = resolve(connection, body.target, settings, now)
        connection.execute(
            insert(ACTIONS).values(
                id=action_id,
                type=body.type.value,
                params=params,
                target=target,
                comment=body.comment,
                created_by=admin.username,
                created_at=now,
                expires_at=now + timedelta(seconds=body.expires_in_s),
                cancelled=False,
                agent_count=len(agent_ids),
            )
        )
        connection.execute(
            insert(ACTION_AGENTS),
            [
                {"action_id": action_id, "agent_id": a, "state": "pending", "detail": ""}
                for a in agent_ids
            ],
        )
        audit(
            session,
            admin.username,
            "action.create",
            action_id,
            {"type": body.type.value, "params": params, "target": target, "agents": len(agent_ids)},
            source_ip=admin.source_ip,
        )
        notify_agents(connection, agent_ids, action_id)  # their long-polls end when this commits
    return action_id


def _progress(
    connection: Connection, ids: Sequence[str], now: datetime
) -> dict[str, dict[str, int]]:
    state = _effective_state(now).label("state")
    rows = connection.execute(
        select(ACTION_AGENTS.c.action_id, state, func.count())
        .select_from(ACTION_AGENTS.join(ACTIONS))
        .where(ACTION_AGENTS.c.action_id.in_(list(ids)))
        .group_by(ACTION_AGENTS.c.action_id, state)
    ).all()
    progress: dict[str, dict[str, int]] = {i: {} for i in ids}
    for action_id, name, count in rows:
        progress[action_id][name] = int(count)
    return progress


def _public(row: Any, progress: dict[str, int]) -> dict[str, Any]:
    done = all(ActionState(s) in FINAL_STATES for s in progress)
    return {
        "id": row.id,
        "type": row.type,
        "params": row.params,
        "target": row.target,
        "comment": row.comment,
        "created_by": row.created_by,
        "created_at": as_utc(row.created_at),
        "expires_at": as_utc(row.expires_at),
        "cancelled": row.cancelled,
        "agents": row.agent_count,
        "progress": progress,
        "done": done,
    }


def list_actions(
    db: Database,
    *,
    kind: ActionType | None,
    agent_id: str | None,
    created_by: str | None,
    since: str | None,
    limit: int,
    offset: int,
    cursor: str | None = None,
) -> Page[ActionPublic]:
    """Newest first; page with ``cursor`` (fast at any depth) or ``offset``. ``since`` is the
    text the admin gave (1h, 7d, ISO-8601): the cursor is bound to it, not to its instant."""
    paging.start(cursor, offset)
    filters = {"type": kind, "agent_id": agent_id, "created_by": created_by, "since": since}
    try:
        start = parse_since(since) if since else None
    except ValueError as exc:
        raise BadRequest(f"since: {exc}") from None
    statement = select(ACTIONS)
    if kind is not None:
        statement = statement.where(ACTIONS.c.type == kind.value)
    if created_by is not None:
        statement = statement.where(ACTIONS.c.created_by == created_by)
    if start is not None:
        statement = statement.where(ACTIONS.c.created_at >= start)
    if agent_id is not None:
        mine = select(ACTION_AGENTS.c.action_id).where(ACTION_AGENTS.c.agent_id == agent_id)
        statement = statement.where(ACTIONS.c.id.in_(mine))
    now = utcnow()
    counted = paging.capped_count_statement(statement)
    if cursor:
        statement = statement.where(NEWEST.after(NEWEST.decode(cursor, filters)))
    statement = statement.order_by(*NEWEST.order_by()).offset(offset).limit(limit + 1)
    with db.read() as connection:
        count, count_capped = paging.capped(connection.execute(counted).scalar_one())
        page = paging.window(connection.execute(statement).all(), limit, NEWEST, filters)
        progress = _progress(connection, [r.id for r in page.rows], now)
    data = [ActionPublic.model_validate(_public(r, progress[r.id])) for r in page.rows]
    return Page[ActionPublic](
        data=data, count=count, count_capped=count_capped, next_cursor=page.next_cursor
    )


def _action_row(connection: Connection, action_id: str) -> Any:
    row = connection.execute(select(ACTIONS).where(ACTIONS.c.id == action_id)).first()
    if row is None:
        raise NotFound(f"no action {action_id!r}")
    return row


def show(db: Database, action_id: str, agent_id: str | None = None) -> ActionDetail:
    now = utcnow()
    with db.read() as connection:
        row = _action_row(connection, action_id)
        has_logs = (
            select(ACTION_BLOBS.c.id)
            .where(
                ACTION_BLOBS.c.action_id == ACTION_AGENTS.c.action_id,
                ACTION_BLOBS.c.agent_id == ACTION_AGENTS.c.agent_id,
            )
            .exists()
        )
        statement = (
            select(
                ACTION_AGENTS,
                AGENTS.c.hostname,
                _effective_state(now).label("shown"),
                has_logs.label("has_logs"),
            )
            .select_from(ACTION_AGENTS.join(ACTIONS).join(AGENTS))
            .where(ACTION_AGENTS.c.action_id == action_id)
            .order_by(AGENTS.c.hostname, ACTION_AGENTS.c.agent_id)
        )
        if agent_id is not None:
            statement = statement.where(ACTION_AGENTS.c.agent_id == agent_id)
        deliveries = connection.execute(statement).all()
        progress = _progress(connection, [action_id], now)[action_id]
    detail = _public(row, progress)
    detail["deliveries"] = [
        ActionDelivery(
            agent_id=d.agent_id,
            hostname=d.hostname,
            state=ActionState(d.shown),
            delivered_at=as_utc(d.delivered_at) if d.delivered_at else None,
            finished_at=as_utc(d.finished_at) if d.finished_at else None,
            result=d.result,
            detail=d.detail,
            has_logs=bool(d.has_logs),
        )
        for d in deliveries
    ]
    return ActionDetail.model_validate(detail)


def cancel(db: Database, action_id: str, admin: AdminIdentity) -> None:
    """Cancel what is still pending; delivered actions are already on their agents."""
    now = utcnow()
    with db.write_session() as session:
        connection = session.connection()
        row = _action_row(connection, action_id)
        if row.cancelled:
            raise Conflict(f"action {action_id} is already cancelled")
        if as_utc(row.expires_at) <= now:
            raise Conflict(f"action {action_id} has expired")
        connection.execute(update(ACTIONS).where(ACTIONS.c.id == action_id).values(cancelled=True))
        cancelled = connection.execute(
            update(ACTION_AGENTS)
            .where(ACTION_AGENTS.c.action_id == action_id, ACTION_AGENTS.c.state == "pending")
            .values(state=ActionState.CANCELLED.value, finished_at=now)
        ).rowcount
        audit(
            session,
            admin.username,
            "action.cancel",
            action_id,
            {"type": row.type, "cancelled_agents": cancelled},
            source_ip=admin.source_ip,
        )


def expire_due(db: Database) -> int:
    """Mark every open row of an expired action expired; the number of rows changed."""
    now = utcnow()
    expired = select(ACTIONS.c.id).where(ACTIONS.c.expires_at <= now)
    with db.write() as connection:
        changed: int = connection.execute(
            update(ACTION_AGENTS)
            .where(ACTION_AGENTS.c.state.in_(OPEN), ACTION_AGENTS.c.action_id.in_(expired))
            .values(state=ActionState.EXPIRED.value, finished_at=now)
        ).rowcount
    return changed


async def sweep_forever(db: Database, interval_s: float = SWEEP_INTERVAL_S) -> None:
    """The periodic expiry sweep of ``esmd serve`` (cancelled with the app's lifespan)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            changed = await db.run(expire_due)
        except Exception:  # the database may be briefly away; the next round retries
            log.warning("action expiry sweep failed", exc_info=True)
            continue
        if changed:
            log.info("expired %d undelivered action rows", changed)

"""Security events: filter by agent, minimum severity, module, time, hostname and triage
status; one event; triage (status, assignee, comment); counts for dashboards.

``sort=received`` lists the oldest received first: a follower (``trapsctl events watch``)
polls with ``received_since`` = the newest ``received_at`` it has seen and ``offset`` = how
many events it has seen at that instant, so it never misses nor repeats one. Deep pages use
the keyset cursor of :mod:`esmd.services.paging`; ``count`` stops at 10,000.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import func, literal
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from esmd.api.deps import DatabaseDep, Reader, SessionDep, Triager
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Cursor, Limit, Offset
from esmd.db.tables import Event, User
from esmd.errors import BadRequest, Conflict, NotFound
from esmd.services import forensics, paging
from esmd.services.audit import audit
from esmd.services.paging import Keyset, SortKey
from esmd.services.storable import check_storable
from esmd.timeutil import parse_since
from trapsapi import routes
from trapsapi.enums import SEVERITY_ORDER, Severity, TimeBucket, TriageStatus
from trapsapi.models import ErrorBody, EventCounts, EventPublic, EventTriage, Page, TimeCount
from trapsapi.models_forensics import EventDetail

router = APIRouter(tags=["events"], responses=ADMIN_ERRORS)
Since = Annotated[
    str | None,
    Query(max_length=64, description="ISO-8601 time, or a duration: 30s, 15m, 1h, 7d."),
]


def _since(text: str) -> datetime:
    try:
        return parse_since(text)
    except ValueError as exc:
        raise BadRequest(f"since: {exc}") from None


BY_TIME = Keyset(
    "events.time",
    (SortKey(col(Event.time), True, datetime), SortKey(col(Event.seq), True, int)),
)
BY_RECEIVED = Keyset(
    "events.received",
    (SortKey(col(Event.received_at), False, datetime), SortKey(col(Event.seq), False, int)),
)
HOSTNAME_COUNT_CAP = 1000
SORTS = {
    "time": BY_TIME,
    "received": BY_RECEIVED,
    "received_desc": Keyset(
        "events.received_desc",
        (SortKey(col(Event.received_at), True, datetime), SortKey(col(Event.seq), True, int)),
    ),
}


@router.get(routes.EVENTS)
def list_events(
    session: SessionDep,
    _admin: Reader,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
    severity: Annotated[Severity | None, Query(description="Minimum severity.")] = None,
    module: Annotated[str | None, Query(max_length=255)] = None,
    since: Since = None,
    status: Annotated[TriageStatus | None, Query(description="Triage status.")] = None,
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
    hostname: Annotated[
        str | None, Query(max_length=255, description="Substring, case-insensitive.")
    ] = None,
    received_since: Annotated[
        str | None, Query(max_length=64, description="Received by the ESM at or after this.")
    ] = None,
    sort: Annotated[
        Literal["time", "received", "received_desc"],
        Query(
            description="time: newest first; received: oldest received first (to follow); "
            "received_desc: newest received first."
        ),
    ] = "time",
    sha256: Annotated[
        str | None, Query(max_length=64, description="Only events about this file (SHA-256).")
    ] = None,
    cursor: Cursor = None,
) -> Page[EventPublic]:
    """Newest first (``sort=time``), or in the order the ESM received them; page with
    ``cursor`` (fast at any depth) or ``offset``."""
    paging.start(cursor, offset)
    filters = {
        "agent_id": agent_id,
        "severity": severity,
        "module": module,
        "since": since,
        "status": status,
        "assignee": assignee,
        "hostname": hostname,
        "received_since": received_since,
        "sha256": sha256,
    }
    conditions: list[Any] = []
    if agent_id:
        conditions.append(col(Event.agent_id) == agent_id)
    by_severity: Any = None
    wanted: list[str] = []
    if severity is not None:
        floor = SEVERITY_ORDER[severity]
        wanted = [s.value for s in Severity if SEVERITY_ORDER[s] >= floor]
        by_severity = col(Event.severity).in_(wanted)
        conditions.append(by_severity)
    if module:
        conditions.append(col(Event.module) == module)
    if since:
        conditions.append(col(Event.time) >= _since(since))
    if status is not None:
        conditions.append(col(Event.status) == status.value)
    if assignee:
        conditions.append(col(Event.assignee) == assignee)
    if hostname:
        conditions.append(
            func.lower(col(Event.hostname)).contains(hostname.lower(), autoescape=True)
        )
    if sha256:
        conditions.append(col(Event.sha256) == sha256.lower())
    if received_since:
        conditions.append(col(Event.received_at) >= _since(received_since))
    keyset = SORTS[sort]
    # No index serves a substring: its count reads events until enough match, so it stops
    # sooner (the page itself reads newest first and stops at ``limit`` matches).
    cap = HOSTNAME_COUNT_CAP if hostname else None
    counted = paging.capped_count_statement(select(col(Event.seq)).where(*conditions), cap)
    count, count_capped = paging.capped(session.connection().execute(counted).scalar_one(), cap)
    if by_severity is not None and count_capped and session.get_bind().dialect.name == "sqlite":
        conditions = [_unindexed(wanted) if c is by_severity else c for c in conditions]
    statement = select(Event).where(*conditions)
    if cursor:
        statement = statement.where(keyset.after(keyset.decode(cursor, filters)))
    rows = session.exec(statement.order_by(*keyset.order_by()).offset(offset).limit(limit + 1))
    page = paging.window(rows.all(), limit, keyset, filters)
    return Page[EventPublic](
        data=[EventPublic.model_validate(r) for r in page.rows],
        count=count,
        count_capped=count_capped,
        next_cursor=page.next_cursor,
    )


def _unindexed(wanted: list[str]) -> Any:
    """SQLite has no statistics (esmd runs no ANALYZE), so for ``severity IN (...)`` it reads
    every such event through the severity index and sorts them all: 0.4-0.8 s for a sixth of
    1M events. When more than the count cap match, they are dense: the same condition on
    ``severity || ''`` (no index can serve it) makes SQLite walk the sort's index instead and
    stop at the page. Few matches keep the index (sorting them is cheap)."""
    return (col(Event.severity) + literal("")).in_(wanted)


def _bucket_expression(dialect: str, bucket: TimeBucket) -> Any:
    """The start of the bucket of ``Event.time`` in UTC: a timestamp on PostgreSQL (truncated
    in UTC, not the session's zone; formatting it per row cost a third of the query), ISO text
    on SQLite."""
    if dialect == "postgresql":
        return func.date_trunc(bucket.value, col(Event.time), "UTC")
    pattern = "%Y-%m-%dT%H:00:00" if bucket is TimeBucket.HOUR else "%Y-%m-%dT00:00:00"
    return func.strftime(pattern, col(Event.time))


def _bucket_start(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get(routes.EVENT_COUNTS)
def event_counts(
    session: SessionDep,
    _admin: Reader,
    since: Annotated[
        str | None,
        Query(max_length=64, description="Default: 24h with hourly buckets, else 30d."),
    ] = None,
    bucket: TimeBucket = TimeBucket.HOUR,
    agent_id: Annotated[str | None, Query(max_length=64)] = None,
) -> EventCounts:
    """Events since a time, counted by module, severity, triage status and time bucket."""
    start = _since(since or ("24h" if bucket is TimeBucket.HOUR else "30d"))
    conditions: list[Any] = [col(Event.time) >= start]
    if agent_id:
        conditions.append(col(Event.agent_id) == agent_id)

    bind = session.get_bind()
    expression = _bucket_expression(bind.dialect.name, bucket).label("bucket")
    keys = (col(Event.module), col(Event.severity), col(Event.status), expression)
    # One pass over the window, grouped by all four at once (a few thousand groups), instead
    # of four scans: the 24 h window of a 10-million-event table is ~330,000 rows.
    grouped = sa_select(*keys, func.count()).where(*conditions).group_by(*keys)
    rows = session.connection().execute(grouped).all()
    by: list[Counter[str]] = [Counter(), Counter(), Counter()]
    by_bucket: Counter[datetime] = Counter()
    for module, severity, status, bucket_value, n in rows:
        for counter, value in zip(by, (module, severity, status), strict=True):
            counter[str(value)] += int(n)
        by_bucket[_bucket_start(bucket_value)] += int(n)
    by_module, by_severity, by_status = (dict(c) for c in by)
    by_time = [TimeCount(start=key, count=n) for key, n in sorted(by_bucket.items())]
    return EventCounts(
        total=sum(by_module.values()),
        since=start,
        bucket=bucket,
        by_module=by_module,
        by_severity=by_severity,
        by_status=by_status,
        by_time=by_time,
    )


ONE_EVENT_ERRORS: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    409: {"model": ErrorBody, "description": "Two agents sent this ID: give agent_id"},
}
EventAgentId = Annotated[
    str | None, Query(max_length=64, description="Needed only if two agents used the ID.")
]


def _one_event(session: Session, event_id: uuid.UUID, agent_id: str | None) -> Event:
    """The event with this ID (event IDs are unique per agent, not across agents)."""
    statement = select(Event).where(col(Event.id) == event_id)
    if agent_id:
        statement = statement.where(col(Event.agent_id) == agent_id)
    rows = session.exec(statement.limit(2)).all()
    if not rows:
        raise NotFound(f"no event {event_id}")
    if len(rows) > 1:
        raise Conflict(f"two agents sent event {event_id}: give agent_id")
    return rows[0]


@router.patch(
    f"{routes.EVENTS}/{{event_id}}",
    responses=ONE_EVENT_ERRORS,
)
def triage_event(
    event_id: uuid.UUID,
    body: EventTriage,
    db: DatabaseDep,
    admin: Triager,
    agent_id: EventAgentId = None,
) -> EventPublic:
    """Set the triage status, the assignee (a user name; "" unassigns) and the comment."""
    check_storable(body)
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise BadRequest("body: give at least one of status, assignee, comment")
    with db.write_session() as session:
        if body.assignee:
            known = session.exec(select(User.id).where(col(User.username) == body.assignee))
            if known.first() is None:
                raise BadRequest(f"assignee: no user {body.assignee!r}")
        row = _one_event(session, event_id, agent_id)
        previous = {"status": row.status, "assignee": row.assignee, "comment": row.comment}
        if body.status is not None:
            row.status = body.status.value
        if body.assignee is not None:
            row.assignee = body.assignee or None
        if body.comment is not None:
            row.comment = body.comment
        session.add(row)
        audit(
            session,
            admin.username,
            "event.triage",
            str(event_id),
            {
                "agent_id": row.agent_id,
                "changes": changes,
                "previous": {key: previous[key] for key in changes},
            },
            source_ip=admin.source_ip,
        )
        session.flush()
        return EventPublic.model_validate(row)


@router.get(
    f"{routes.EVENTS}/{{event_id}}",
    responses=ONE_EVENT_ERRORS,
)
def get_event(
    event_id: uuid.UUID,
    session: SessionDep,
    _admin: Reader,
    agent_id: EventAgentId = None,
) -> EventDetail:
    """One event with its details (process ancestry, forensics reference) and the forensic
    bundles the ESM holds for it (download: ``GET /forensics/{id}/content``)."""
    row = _one_event(session, event_id, agent_id)
    refs = forensics.refs_for_event(session.connection(), str(row.id), row.agent_id)
    return EventDetail(**EventPublic.model_validate(row).model_dump(), forensics=refs)

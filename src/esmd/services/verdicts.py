"""Effective hash verdicts across sources, bulk feed imports and where a hash was seen.

Precedence: an admin override beats every feed, a feed beats the agents' own analysis, and
among feeds (or among agent reports) the most severe verdict wins, so the outcome never
depends on the order in which sources were imported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, select, update

from esmd.db.engine import Database
from esmd.db.tables import EVENTS, HASH_INTEL, HASH_VERDICTS
from esmd.services.audit import audit_row
from esmd.services.policy_history import record_version
from esmd.timeutil import utcnow
from trapsapi.enums import Verdict
from trapsapi.models_hashes import (
    AgentAnalysis,
    AgentVerdictQuery,
    AgentVerdicts,
    HashFeed,
    HashImport,
    HashImportResult,
    HashReport,
    HashSighting,
    HashSource,
)

ADMIN = "admin"
AGENT = "agent"
FEED_PREFIX = "feed:"
SEVERITY = {Verdict.UNKNOWN: 0, Verdict.BENIGN: 1, Verdict.GRAYWARE: 2, Verdict.MALWARE: 3}
_ENFORCED = {Verdict.MALWARE.value, Verdict.BENIGN.value}
_SIGHTINGS_LIMIT = 200
_CHUNK = 500  # rows per IN (...) probe: well under SQLite's bound-parameter limit
_UPDATE = (
    update(HASH_INTEL)
    .where(HASH_INTEL.c.sha256 == bindparam("b_sha256"))
    .values(
        verdict=bindparam("b_verdict"),
        comment=bindparam("b_comment"),
        updated_at=bindparam("b_updated_at"),
    )
)


def source_rank(source: str) -> int:
    """Higher wins: admin override, then feeds, then agent analysis."""
    if source == ADMIN:
        return 2
    return 1 if source.startswith(FEED_PREFIX) else 0


def winner(sources: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The (source, verdict) that decides, from every (source, verdict) of one hash."""
    best: tuple[str, str] | None = None
    for source, verdict in sources:
        key = (source_rank(source), SEVERITY[Verdict(verdict)])
        if best is None or key > (source_rank(best[0]), SEVERITY[Verdict(best[1])]):
            best = (source, verdict)
    return best


def enforced_lists(connection: Connection) -> tuple[list[str], list[str]]:
    """(blocked, allowed) SHA-256 lists the agents enforce, sorted.

    Agents' own analysis is never enforced fleet-wide: one compromised agent reporting
    ``/bin/ls`` as malware must not get it blocked everywhere. It informs admins (the hash
    report) and the agent that made it.
    """
    by_hash: dict[str, list[tuple[str, str]]] = {}
    for sha, verdict in connection.execute(select(HASH_VERDICTS.c.sha256, HASH_VERDICTS.c.verdict)):
        by_hash.setdefault(sha, []).append((ADMIN, verdict))
    intel = select(HASH_INTEL.c.sha256, HASH_INTEL.c.source, HASH_INTEL.c.verdict).where(
        HASH_INTEL.c.source != AGENT
    )
    for sha, source, verdict in connection.execute(intel):
        by_hash.setdefault(sha, []).append((source, verdict))
    blocked: list[str] = []
    allowed: list[str] = []
    for sha in sorted(by_hash):
        decided = winner(by_hash[sha])
        if decided is not None and decided[1] == Verdict.MALWARE.value:
            blocked.append(sha)
        elif decided is not None and decided[1] == Verdict.BENIGN.value:
            allowed.append(sha)
    return blocked, allowed


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def import_feed(
    db: Database, request: HashImport, actor: str, source_ip: str | None
) -> HashImportResult:
    """Upsert one chunk of a feed in one transaction; bump the policy version if agents'
    enforced lists may change; one audit record per chunk."""
    source = FEED_PREFIX + request.feed
    now = utcnow()
    wanted: dict[str, tuple[str, str]] = {}
    for entry in request.entries:  # the last line for a hash wins within one import
        wanted[entry.sha256] = ((entry.verdict or request.verdict).value, entry.comment)
    hashes = sorted(wanted)
    inserted = updated = unchanged = removed = 0
    enforced_change = False
    with db.write() as connection:
        existing: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(hashes):
            rows = connection.execute(
                select(HASH_INTEL.c.sha256, HASH_INTEL.c.verdict, HASH_INTEL.c.comment).where(
                    HASH_INTEL.c.source == source, HASH_INTEL.c.sha256.in_(chunk)
                )
            )
            existing.update({sha: (verdict, comment) for sha, verdict, comment in rows})
        new_rows = []
        update_rows = []  # unchanged rows too: a chunked `replace` keeps what it re-imported
        for sha in hashes:
            verdict, comment = wanted[sha]
            old = existing.get(sha)
            row = {"sha256": sha, "verdict": verdict, "comment": comment, "updated_at": now}
            if old is None:
                new_rows.append({**row, "source": source})
                enforced_change |= verdict in _ENFORCED
            else:
                update_rows.append({f"b_{k}": v for k, v in row.items()})
                if old == (verdict, comment):
                    unchanged += 1
                else:
                    updated += 1
                    enforced_change |= old[0] != verdict
        if new_rows:
            connection.execute(insert(HASH_INTEL), new_rows)
            inserted = len(new_rows)
        if update_rows:
            connection.execute(_UPDATE.where(HASH_INTEL.c.source == source), update_rows)
        if request.replace:
            stale = and_(
                HASH_INTEL.c.source == source, HASH_INTEL.c.updated_at < (request.since or now)
            )
            enforced_change |= bool(
                connection.execute(
                    select(func.count()).where(stale, HASH_INTEL.c.verdict.in_(_ENFORCED))
                ).scalar_one()
            )
            removed = connection.execute(delete(HASH_INTEL).where(stale)).rowcount or 0
        result = HashImportResult(
            feed=request.feed,
            received=len(request.entries),
            inserted=inserted,
            updated=updated,
            unchanged=unchanged,
            removed=removed,
            server_time=now,
        )
        counts = result.model_dump(mode="json", exclude={"server_time", "feed"})
        if enforced_change:
            record_version(connection, actor, "hash.import", "", {"feed": request.feed, **counts})
        audit_row(connection, actor, "hash.import", source, counts, source_ip=source_ip)
    return result


def feeds(connection: Connection) -> list[HashFeed]:
    rows = connection.execute(
        select(
            HASH_INTEL.c.source,
            HASH_INTEL.c.verdict,
            func.count(),
            func.max(HASH_INTEL.c.updated_at),
        )
        .where(HASH_INTEL.c.source.startswith(FEED_PREFIX))
        .group_by(HASH_INTEL.c.source, HASH_INTEL.c.verdict)
        .order_by(HASH_INTEL.c.source)
    )
    by_feed: dict[str, HashFeed] = {}
    for source, verdict, count, last in rows:
        name = source.removeprefix(FEED_PREFIX)
        feed = by_feed.setdefault(
            name, HashFeed(feed=name, entries=0, by_verdict={}, updated_at=None)
        )
        feed.entries += count
        feed.by_verdict[verdict] = count
        if feed.updated_at is None or (last is not None and last > feed.updated_at):
            feed.updated_at = last
    return list(by_feed.values())


def delete_feed(db: Database, feed: str, actor: str, source_ip: str | None) -> int:
    """Remove every entry of a feed; the number removed (0 when the feed is unknown)."""
    source = FEED_PREFIX + feed
    with db.write() as connection:
        enforced = connection.execute(
            select(func.count()).where(
                HASH_INTEL.c.source == source, HASH_INTEL.c.verdict.in_(_ENFORCED)
            )
        ).scalar_one()
        removed = connection.execute(delete(HASH_INTEL).where(HASH_INTEL.c.source == source))
        count = removed.rowcount or 0
        if count:
            if enforced:
                changes = {"feed": feed, "removed": count}
                record_version(connection, actor, "hash.feed.delete", "", changes)
            audit_row(
                connection,
                actor,
                "hash.feed.delete",
                source,
                {"removed": count},
                source_ip=source_ip,
            )
    return count


def report(connection: Connection, sha256: str) -> HashReport:
    """Every source's verdict of one hash, the one that wins, and the agents that saw it."""
    sources: list[HashSource] = []
    admin = connection.execute(
        select(HASH_VERDICTS.c.verdict, HASH_VERDICTS.c.comment, HASH_VERDICTS.c.updated_at).where(
            HASH_VERDICTS.c.sha256 == sha256
        )
    ).first()
    if admin is not None:
        sources.append(
            HashSource(
                source=ADMIN,
                verdict=Verdict(admin.verdict),
                comment=admin.comment,
                updated_at=admin.updated_at,
            )
        )
    intel = connection.execute(
        select(
            HASH_INTEL.c.source, HASH_INTEL.c.verdict, HASH_INTEL.c.comment, HASH_INTEL.c.updated_at
        )
        .where(HASH_INTEL.c.sha256 == sha256)
        .order_by(HASH_INTEL.c.source)
    )
    sources.extend(
        HashSource(
            source=r.source, verdict=Verdict(r.verdict), comment=r.comment, updated_at=r.updated_at
        )
        for r in intel
    )
    decided = winner((s.source, s.verdict.value) for s in sources)
    sightings = connection.execute(
        select(
            EVENTS.c.agent_id,
            func.max(EVENTS.c.hostname).label("hostname"),
            EVENTS.c.process_path,
            func.count().label("events"),
            func.min(EVENTS.c.time).label("first_seen"),
            func.max(EVENTS.c.time).label("last_seen"),
        )
        .where(EVENTS.c.sha256 == sha256)
        .group_by(EVENTS.c.agent_id, EVENTS.c.process_path)
        .order_by(func.max(EVENTS.c.time).desc())
        .limit(_SIGHTINGS_LIMIT)
    )
    return HashReport(
        sha256=sha256,
        verdict=Verdict(decided[1]) if decided else Verdict.UNKNOWN,
        source=decided[0] if decided else None,
        sources=sources,
        sightings=[HashSighting.model_validate(r, from_attributes=True) for r in sightings],
    )


VERDICT_TTL_S = 3600


def answer_agent(db: Database, credential: str, query: AgentVerdictQuery) -> AgentVerdicts:
    """Verdicts of admins and feeds for the hashes an agent asks about; its own analysis
    stored as the ``agent`` source (the most severe report of any agent stays)."""
    from esmd.services.agents import authenticate

    asked = sorted(set(query.sha256s))
    found: dict[str, list[tuple[str, str]]] = {sha: [] for sha in asked}
    with db.write() as connection:
        agent = authenticate(connection, credential)
        for chunk in _chunks(asked):
            admin = select(HASH_VERDICTS.c.sha256, HASH_VERDICTS.c.verdict).where(
                HASH_VERDICTS.c.sha256.in_(chunk)
            )
            for sha, verdict in connection.execute(admin):
                found[sha].append((ADMIN, verdict))
            intel = select(HASH_INTEL.c.sha256, HASH_INTEL.c.source, HASH_INTEL.c.verdict).where(
                HASH_INTEL.c.sha256.in_(chunk), HASH_INTEL.c.source != AGENT
            )
            for sha, source, verdict in connection.execute(intel):
                found[sha].append((source, verdict))
        _store_reports(connection, query.reports, agent.hostname)
    verdicts = {}
    for sha, sources in found.items():
        decided = winner(sources)
        verdicts[sha] = Verdict(decided[1]) if decided else Verdict.UNKNOWN
    return AgentVerdicts(verdicts=verdicts, ttl_s=VERDICT_TTL_S)


def _store_reports(connection: Connection, reports: Sequence[AgentAnalysis], host: str) -> None:
    if not reports:
        return
    latest = {r.sha256: r for r in reports}
    existing = {}
    for chunk in _chunks(sorted(latest)):
        rows = connection.execute(
            select(HASH_INTEL.c.sha256, HASH_INTEL.c.verdict).where(
                HASH_INTEL.c.source == AGENT, HASH_INTEL.c.sha256.in_(chunk)
            )
        )
        for sha, verdict in rows:
            existing[sha] = verdict
    now = utcnow()
    new, worse = [], []
    for sha, report in latest.items():
        comment = f"{host}: {'; '.join(report.reasons)}"[:1024]
        row = {
            "sha256": sha,
            "verdict": report.verdict.value,
            "comment": comment,
            "updated_at": now,
        }
        old = existing.get(sha)
        if old is None:
            new.append({**row, "source": AGENT})
        elif SEVERITY[report.verdict] > SEVERITY[Verdict(old)]:
            worse.append({f"b_{k}": v for k, v in row.items()})
    if new:
        connection.execute(insert(HASH_INTEL), new)
    if worse:
        connection.execute(_UPDATE.where(HASH_INTEL.c.source == AGENT), worse)

"""Retention and quotas: delete rows older than N days or beyond a row quota, in batches.

Every batch is its own short transaction (``SELECT key … ORDER BY time LIMIT n`` on an
indexed time column, then ``DELETE … WHERE key IN (…)``), so neither database holds a long
lock and ingest keeps flowing. Any table plugs in with a :class:`RetentionTarget`: a table
of uploaded blobs names its file column, and the files go after their rows are committed; a
table with a size column (forensic bundles) can have a byte quota as well as a row quota.
Each run that deleted something writes one ``retention.delete`` audit record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Table, delete, func, select

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.db.tables import AUDIT_LOG, EVENTS
from esmd.db.tables_forensics import FORENSIC_BUNDLES
from esmd.timeutil import utcnow

log = logging.getLogger(__name__)
ACTOR = "esmd"


@dataclass(frozen=True)
class RetentionTarget:
    """A table under retention: rows older than ``max_age_days`` (by ``time_column``) and the
    oldest rows beyond ``max_rows`` go; 0 disables either rule."""

    name: str
    table: Table
    time_column: Column[Any]
    key_column: Column[Any]
    max_age_days: int = 0
    max_rows: int = 0
    file_column: Column[Any] | None = None
    """Paths (absolute, or relative to ``file_root``) of blobs to unlink with their rows."""
    file_root: Path | None = None
    size_column: Column[Any] | None = None
    max_bytes: int = 0
    """With ``size_column``: the oldest rows go while the sizes add up to more than this."""


@dataclass
class TargetSummary:
    name: str
    by_age: int = 0
    by_quota: int = 0
    by_size: int = 0
    files: int = 0
    batches: int = 0

    @property
    def deleted(self) -> int:
        return self.by_age + self.by_quota + self.by_size


@dataclass
class RetentionSummary:
    targets: list[TargetSummary] = field(default_factory=list)

    @property
    def deleted(self) -> int:
        return sum(target.deleted for target in self.targets)

    def lines(self) -> list[str]:
        """One line per target that deleted something (or one saying nothing was)."""
        return [
            f"{t.name}: {t.deleted} deleted ({t.by_age} by age, {t.by_quota} by quota"
            + (f", {t.by_size} by size" if t.by_size else "")
            + (f", {t.files} files" if t.files else "")
            + f") in {t.batches} batches"
            for t in self.targets
            if t.deleted
        ] or ["retention: nothing to delete"]


def _delete_batch(
    db: Database, target: RetentionTarget, where: Any, limit: int, free_bytes: int = 0
) -> tuple[list[Any], int]:
    """Delete up to ``limit`` of the oldest rows matching ``where`` (with ``free_bytes``: only
    as many as free that many bytes); their file paths and the bytes freed."""
    columns = [target.key_column, target.file_column, target.size_column]
    query = select(*(c for c in columns if c is not None))
    query = query.order_by(target.time_column, target.key_column).limit(limit)
    if where is not None:
        query = query.where(where)
    with db.write() as connection:
        rows = connection.execute(query).all()
        freed = 0
        if free_bytes > 0:
            for count, row in enumerate(rows, 1):
                freed += int(row[-1])
                if freed >= free_bytes:
                    rows = rows[:count]
                    break
        if not rows:
            return [], 0
        keys = [row[0] for row in rows]
        connection.execute(delete(target.table).where(target.key_column.in_(keys)))
    if target.file_column is None:
        return [None] * len(rows), freed
    return [row[1] for row in rows], freed


def _unlink(target: RetentionTarget, paths: list[Any]) -> int:
    removed = 0
    for value in paths:
        if not value:
            continue
        path = Path(value)
        if not path.is_absolute() and target.file_root is not None:
            path = target.file_root / path
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("retention could not remove %s: %s", path, exc.strerror or exc)
    return removed


def apply(
    db: Database,
    target: RetentionTarget,
    batch_size: int,
    should_stop: Callable[[], bool] = lambda: False,
) -> TargetSummary:
    """Apply the age rule, then the quota, to one target."""
    summary = TargetSummary(target.name)
    if target.max_age_days > 0:
        cutoff = utcnow() - timedelta(days=target.max_age_days)
        while not should_stop():
            paths, _ = _delete_batch(db, target, target.time_column < cutoff, batch_size)
            if not paths:
                break
            summary.by_age += len(paths)
            summary.files += _unlink(target, paths)
            summary.batches += 1
    if target.max_rows > 0:
        with db.read() as connection:
            count = int(
                connection.execute(select(func.count()).select_from(target.table)).scalar_one()
            )
        excess = count - target.max_rows
        while excess > 0 and not should_stop():
            paths, _ = _delete_batch(db, target, None, min(batch_size, excess))
            if not paths:
                break
            excess -= len(paths)
            summary.by_quota += len(paths)
            summary.files += _unlink(target, paths)
            summary.batches += 1
    if target.max_bytes > 0 and target.size_column is not None:
        _apply_size_quota(db, target, batch_size, should_stop, summary)
    return summary


def _apply_size_quota(
    db: Database,
    target: RetentionTarget,
    batch_size: int,
    should_stop: Callable[[], bool],
    summary: TargetSummary,
) -> None:
    assert target.size_column is not None
    with db.read() as connection:
        total = connection.execute(select(func.coalesce(func.sum(target.size_column), 0)))
        excess = int(total.scalar_one()) - target.max_bytes
    while excess > 0 and not should_stop():
        paths, freed = _delete_batch(db, target, None, batch_size, free_bytes=excess)
        if not paths:
            break
        excess -= freed
        summary.by_size += len(paths)
        summary.files += _unlink(target, paths)
        summary.batches += 1


def targets(settings: Settings) -> list[RetentionTarget]:
    """The tables under retention; uploads/forensic tables append their target here."""
    return [
        RetentionTarget(
            name="events",
            table=EVENTS,
            time_column=EVENTS.c.received_at,
            key_column=EVENTS.c.seq,
            max_age_days=settings.retention_events_days,
            max_rows=settings.retention_events_max_rows,
        ),
        RetentionTarget(
            name="forensics",
            table=FORENSIC_BUNDLES,
            time_column=FORENSIC_BUNDLES.c.received_at,
            key_column=FORENSIC_BUNDLES.c.id,
            max_age_days=settings.retention_forensics_days,
            max_rows=settings.retention_forensics_max_bundles,
            size_column=FORENSIC_BUNDLES.c.size,
            max_bytes=settings.retention_forensics_max_bytes,
        ),
    ]


def run(
    db: Database,
    settings: Settings,
    chosen: list[RetentionTarget] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> RetentionSummary:
    """One retention pass over every target, audited when it deleted anything."""
    summary = RetentionSummary()
    for target in chosen if chosen is not None else targets(settings):
        summary.targets.append(apply(db, target, settings.retention_batch_size, should_stop))
    if summary.deleted:
        detail = {
            t.name: {"by_age": t.by_age, "by_quota": t.by_quota, "files": t.files}
            | ({"by_size": t.by_size} if t.by_size else {})
            for t in summary.targets
            if t.deleted
        }
        with db.write() as connection:
            connection.execute(
                AUDIT_LOG.insert().values(
                    at=utcnow(),
                    actor=ACTOR,
                    action="retention.delete",
                    target=",".join(detail),
                    detail=detail,
                    source_ip=None,
                )
            )
        for line in summary.lines():
            log.info("retention: %s", line)
    return summary

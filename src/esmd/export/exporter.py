"""The background exporter: committed events, read by a persisted cursor, sent in batches.

Ingest never waits for a SIEM: it commits, and this loop (one thread per sink, one leader
per sink across processes) reads ``events`` after the sink's ``export_cursors.last_seq``,
sends the batch, and only then advances the cursor. A restart or an outage therefore loses
nothing; at most the batch in flight when the process died is sent twice.

``seq`` is assigned when a row is inserted but becomes visible when its transaction commits,
so a lower ``seq`` can appear after a higher one was read. Reading only rows received at
least ``export_settle_s`` ago (ingest transactions take milliseconds) closes that gap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select, update

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.db.tables import AGENTS, EVENTS
from esmd.db.tables_ops import EXPORT_CURSORS
from esmd.export.config import ExportSink
from esmd.export.formats import ExportRow
from esmd.export.sinks import Sink, SinkError
from esmd.ops.leader import Leadership
from esmd.timeutil import utcnow
from trapsapi.enums import SEVERITY_ORDER, Severity

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    exported: int = 0
    failures: int = 0
    lag_s: float = 0.0
    last_seq: int = 0
    leader: bool = False


@dataclass
class StepResult:
    read: int = 0
    sent: int = 0
    full: bool = False
    last_seq: int = 0


@dataclass
class SinkExporter:
    """Exports to one sink; ``step`` is one batch, ``run`` loops until ``stop`` is set."""

    db: Database
    config: ExportSink
    settings: Settings
    stats: SinkStats = field(default_factory=SinkStats)

    def __post_init__(self) -> None:
        self.sink = Sink(self.config)
        self.leadership = Leadership(self.db.engine, f"export:{self.config.name}")
        floor = SEVERITY_ORDER[Severity(self.config.min_severity)]
        self._severities = {s.value for s in Severity if SEVERITY_ORDER[s] >= floor}
        self._modules = set(self.config.modules)

    def _cursor(self) -> int:
        with self.db.read() as connection:
            last = connection.execute(
                select(EXPORT_CURSORS.c.last_seq).where(EXPORT_CURSORS.c.sink == self.config.name)
            ).scalar()
        if last is not None:
            return int(last)
        with self.db.write() as connection:
            exists = connection.execute(
                select(EXPORT_CURSORS.c.last_seq).where(EXPORT_CURSORS.c.sink == self.config.name)
            ).scalar()
            if exists is not None:
                return int(exists)
            start = 0
            if self.config.start == "now":
                start = int(connection.execute(select(func.max(EVENTS.c.seq))).scalar() or 0)
            connection.execute(
                EXPORT_CURSORS.insert().values(
                    sink=self.config.name, last_seq=start, exported=0, updated_at=utcnow()
                )
            )
            return start

    def _read(self, after: int) -> list[ExportRow]:
        horizon = utcnow() - timedelta(seconds=self.settings.export_settle_s)
        columns = [EVENTS.c[name] for name in _EVENT_COLUMNS]
        statement = (
            select(*columns, AGENTS.c.ips)
            .select_from(EVENTS.outerjoin(AGENTS, AGENTS.c.agent_id == EVENTS.c.agent_id))
            .where(EVENTS.c.seq > after, EVENTS.c.received_at <= horizon)
            .order_by(EVENTS.c.seq)
            .limit(self.settings.export_batch_size)
        )
        with self.db.read() as connection:
            result = connection.execute(statement).all()
        rows = []
        for record in result:
            values = dict(record._mapping)
            ips = values.pop("ips") or []
            values["id"] = str(values["id"])
            values["details"] = values["details"] or {}
            rows.append(ExportRow(**values, agent_ip=ips[0] if ips else None))
        return rows

    def _wanted(self, row: ExportRow) -> bool:
        if row.severity not in self._severities:
            return False
        return not self._modules or row.module in self._modules

    def step(self) -> StepResult:
        """Send the next batch and advance the cursor; SinkError leaves the cursor as it was."""
        after = self._cursor()
        rows = self._read(after)
        result = StepResult(read=len(rows), full=len(rows) >= self.settings.export_batch_size)
        result.last_seq = after
        if not rows:
            self.stats.lag_s = 0.0
            self.stats.last_seq = after
            return result
        self.stats.lag_s = max(0.0, (utcnow() - rows[0].received_at).total_seconds())
        chosen = [row for row in rows if self._wanted(row)]
        self.sink.send(chosen)
        last = rows[-1]
        with self.db.write() as connection:
            moved = connection.execute(
                update(EXPORT_CURSORS)
                .where(
                    EXPORT_CURSORS.c.sink == self.config.name, EXPORT_CURSORS.c.last_seq == after
                )
                .values(
                    last_seq=last.seq,
                    last_received_at=last.received_at,
                    exported=EXPORT_CURSORS.c.exported + len(chosen),
                    updated_at=utcnow(),
                )
            ).rowcount
        if moved != 1:
            log.warning("export cursor of %s moved under this process", self.config.name)
        self.stats.exported += len(chosen)
        self.stats.last_seq = last.seq
        self.stats.lag_s = 0.0 if not result.full else self.stats.lag_s
        result.sent = len(chosen)
        result.last_seq = last.seq
        return result

    def run(self, stop: threading.Event) -> None:
        poll = self.settings.export_poll_s
        backoff = poll
        failing = False
        while not stop.is_set():
            try:
                self.stats.leader = self.leadership.acquire()
                if not self.stats.leader:
                    stop.wait(max(poll, 5.0))
                    continue
                result = self.step()
                if failing:
                    log.info("export to %s recovered", self.config.describe())
                failing, backoff = False, poll
                if not result.full:
                    stop.wait(poll)
            except Exception as exc:  # a sink or database outage: retry with backoff
                self.stats.failures += 1
                if not failing:
                    reason = (
                        str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
                    )
                    log.warning("export to %s failed, retrying: %s", self.config.describe(), reason)
                failing = True
                stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.export_retry_max_s)
        self.sink.close()
        self.leadership.release()


_EVENT_COLUMNS: Sequence[str] = (
    "seq",
    "id",
    "agent_id",
    "hostname",
    "time",
    "received_at",
    "module",
    "severity",
    "action",
    "process_path",
    "sha256",
    "pid",
    "ppid",
    "parent_path",
    "user",
    "uid",
    "cmdline",
    "details",
)

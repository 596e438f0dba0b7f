"""The background threads of ``esmd serve``: one exporter per SIEM sink and the retention loop.

Each job leads alone across processes (:mod:`esmd.ops.leader`); the threads are daemons
stopped by :meth:`Operations.stop` when the app shuts down. Their counters are rendered
into ``/metrics`` by :meth:`Operations.render`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.export.exporter import SinkExporter
from esmd.ops import retention
from esmd.ops.leader import Leadership

log = logging.getLogger(__name__)


class Operations:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.exporters = [SinkExporter(db, sink, settings) for sink in settings.export_sinks]
        self.retention_deleted: Counter[str] = Counter()
        self.retention_runs = 0
        self.retention_failures = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def retention_enabled(self) -> bool:
        targets = retention.targets(self.settings)
        return any(t.max_age_days or t.max_rows or t.max_bytes for t in targets)

    def start(self) -> None:
        for exporter in self.exporters:
            name = f"esmd-export-{exporter.config.name}"
            self._spawn(name, lambda e=exporter: e.run(self._stop))
            log.info("exporting security events to %s", exporter.config.describe())
        if self.retention_enabled:
            self._spawn("esmd-retention", self._retention_loop)

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _retention_loop(self) -> None:
        leadership = Leadership(self.db.engine, "retention")
        while not self._stop.is_set():
            try:
                if leadership.acquire():
                    summary = retention.run(self.db, self.settings, should_stop=self._stop.is_set)
                    self.retention_runs += 1
                    for target in summary.targets:
                        self.retention_deleted[target.name] += target.deleted
            except Exception as exc:  # the database may be down: try again next interval
                self.retention_failures += 1
                log.warning("retention failed: %s: %s", type(exc).__name__, exc)
            self._stop.wait(self.settings.retention_interval_s)
        leadership.release()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)

    def render(self) -> list[str]:
        """Prometheus text lines of the export and retention counters."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                number = int(value) if float(value).is_integer() else round(value, 3)
                lines.append(f"{name}{labels} {number}")

        sinks = [(f'{{sink="{e.config.name}"}}', e) for e in self.exporters]
        family(
            "esmd_export_events_total",
            "counter",
            "Security events delivered to a SIEM sink by this process.",
            [(label, e.stats.exported) for label, e in sinks],
        )
        family(
            "esmd_export_failures_total",
            "counter",
            "Failed export attempts (each is retried with backoff).",
            [(label, e.stats.failures) for label, e in sinks],
        )
        family(
            "esmd_export_lag_seconds",
            "gauge",
            "Age of the oldest event not yet exported (0 when caught up).",
            [(label, e.stats.lag_s) for label, e in sinks],
        )
        family(
            "esmd_export_leader",
            "gauge",
            "1 when this process runs the sink's exporter.",
            [(label, int(e.stats.leader)) for label, e in sinks],
        )
        family(
            "esmd_retention_deleted_total",
            "counter",
            "Rows deleted by retention in this process, by table.",
            [(f'{{table="{name}"}}', n) for name, n in sorted(self.retention_deleted.items())],
        )
        family(
            "esmd_retention_runs_total",
            "counter",
            "Retention passes completed by this process.",
            [("", self.retention_runs)],
        )
        return lines

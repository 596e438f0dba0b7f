"""The agent's detection pipeline (mixed into ``trapsd.daemon.Agent``).

Sensor threads hand detections over without ever blocking: each goes into the crash journal
(a memory write), then onto a bounded queue. The ``writer`` thread drains the queue,
collapses repeats (:mod:`trapsd.ratelimit`), starts forensics bundles, commits the events to
the durable outbox, frees their journal slots and wakes the ESM link.
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from typing import Any

from trapsd.checkin import Comms
from trapsd.defaults import BEHAVIOUR_MODULES, CHILD_PROCESS, RESTRICTIONS
from trapsd.events import Detection, build_event
from trapsd.exec_rules import ModuleConfig
from trapsd.forensics import Forensics
from trapsd.journal import Journal
from trapsd.outbox import Outbox
from trapsd.policy import Policy
from trapsd.ratelimit import EventLimiter

log = logging.getLogger("trapsd.daemon")
QUEUE_MAX = 10_000
RECENT_EVENTS = 200  # `trapsd events` shows these (the outbox empties once uploaded)
WRITE_BATCH = 500
STOP = object()  # put on the queue by shutdown: the writer flushes and ends


class DetectionPipeline:
    policy: Policy
    journal: Journal | None
    queue: queue.Queue[Any]
    queue_drops: int
    _drops_counted: int
    limiter: EventLimiter
    outbox: Outbox
    forensics: Forensics
    recent_events: deque[dict[str, Any]]
    comms: Comms | None

    def emit(self, detection: Detection) -> None:
        """Called on sensor threads: never blocks (a full queue is counted, not waited on).

        The detection goes into the crash journal first (a memory write), so a SIGKILL
        before the writer has committed it to the outbox loses nothing.
        """
        self.emit_journaled(self.journal_detection(detection), detection)

    def journal_detection(self, detection: Detection, replaces: int = -1) -> int:
        """A memory write only: safe on the fanotify thread before it answers the kernel."""
        journal = self.journal
        if journal is None:
            return -1
        try:
            if replaces >= 0:
                journal.release([replaces])
            return journal.append(detection)
        except ValueError:  # closed by a concurrent shutdown
            return -1

    def emit_journaled(self, slot: int, detection: Detection) -> None:
        """Hand a journaled detection to the writer (never blocks)."""
        try:
            self.queue.put_nowait((slot, detection))
        except queue.Full:
            self.queue_drops += 1

    def _write_loop(self) -> None:
        stop = False
        while not stop:
            expiry = self.limiter.next_expiry()  # no wake-up unless a summary falls due
            try:
                timeout = None if expiry is None else max(0.0, expiry - time.monotonic())
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            batch: list[Detection] = []
            slots: list[int] = []
            now = time.monotonic()
            while item is not None:
                if item is STOP:
                    stop = True
                else:
                    slot, detection = item
                    slots.append(slot)
                    batch += self.limiter.admit(detection, now)
                if len(batch) >= WRITE_BATCH:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    item = None
            batch += self.limiter.flush() if stop else self.limiter.expire(now)
            self._count_queue_drops()
            if batch:
                self._store(batch)
            if self.journal is not None and slots:
                self.journal.release(slots)  # committed (or counted as repeats): done

    def _recover_journal(self) -> None:
        """Detections a killed predecessor journaled but may not have committed."""
        assert self.journal is not None
        recovered = self.journal.recover()
        if recovered:
            stored = self.outbox.add([build_event(d) for _, d in recovered])
            self.journal.release([slot for slot, _ in recovered])
            log.warning(
                "recovered %d detections from the crash journal (%d were not yet in the outbox)",
                len(recovered),
                stored,
            )

    def _store(self, batch: list[Detection]) -> None:
        alerts = [d for d in batch if self._config(d.module).user_alert]
        for d in alerts:
            d.details["user_alert"] = True
        for d in batch:  # exec modules' events: their bundle is collected now, off this thread
            if self.forensics.enabled and "forensics_id" not in d.details:
                d.details["forensics_id"] = d.id
                self.forensics.submit(d.id, None, dict(build_event(d)))
        events = [build_event(d) for d in batch]
        self.outbox.add(events)
        self.recent_events.extend(dict(e) for e in events)
        for d in alerts:
            log.warning("USER ALERT: Traps %s %s %s", d.module, d.action, d.process_path)
        for d in batch:
            repeats = d.details.get("repeat_count")
            log.warning(
                "%s %s: %s (%s, pid %s%s)",
                d.module,
                d.action,
                d.process_path,
                f"rule {d.details['rule']}" if "rule" in d.details else f"sha256 {d.sha256}",
                d.pid,
                f", {repeats} more in the last {self.limiter.window_s:g} s" if repeats else "",
            )
        if self.comms is not None:
            self.comms.notify_events(checkin=True)

    def _config(self, module: str) -> ModuleConfig:
        if module == RESTRICTIONS:
            return self.policy.restrictions.config
        if module == CHILD_PROCESS:
            return self.policy.child_process.config
        if module in BEHAVIOUR_MODULES:
            return self.policy.behaviour.config(module)
        return self.policy.malware

    def _count_queue_drops(self) -> None:
        drops = self.queue_drops
        if drops > self._drops_counted:
            self.outbox.count_dropped(drops - self._drops_counted)
            log.error("event queue full: %d events dropped", drops - self._drops_counted)
            self._drops_counted = drops

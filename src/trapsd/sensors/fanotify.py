"""Prevention with fanotify ``FAN_OPEN_EXEC_PERM``: the kernel holds every execve until we answer.

A listener that stops answering freezes every exec on the host, so:

- the verdict thread (:mod:`trapsd.sensors.fanotify_listener`) never logs, execs, touches the
  network or waits on another thread;
- a supervisor thread is the watchdog: when a verdict takes longer than the timeout (or the
  verdict thread died) it fails open by replacing the fanotify descriptor with /dev/null
  (the kernel then allows everything pending), starts a fresh listener and reports the module
  degraded. It also marks filesystems mounted later (POLLPRI on /proc/self/mountinfo). It
  ticks only while verdicts are being asked for: an idle agent's watchdog sleeps, and the
  verdict thread wakes it (one pipe write) when a batch starts.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from trapsd import scheduling
from trapsd.config import AgentSettings
from trapsd.policy import Policy
from trapsd.sensors.base import (
    CAP_SYS_ADMIN,
    Emit,
    Judge,
    Recorder,
    SensorUnavailable,
    has_capability,
)
from trapsd.sensors.fanotify_listener import Listener
from trapsd.sensors.mounts import Mount, read_mounts, select_mounts

TRIP_MEMORY_S = 600.0  # a fail-open keeps the module "degraded" this long
DISARM_AFTER_S = 1.0  # the watchdog sleeps after this long without a verdict
log = logging.getLogger(__name__)


class FanotifySensor:
    mechanism = "fanotify"
    can_block = True

    def __init__(
        self,
        settings: AgentSettings,
        policy: Policy,
        emit: Emit,
        judge: Judge,
        recorder: Recorder | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.emit = emit
        self.recorder = recorder  # journals a detection before the kernel gets the answer
        self.judge = judge
        # Whether a digest's verdict is final (else its file gets no kernel ignore mark).
        self.settled: Callable[[bytes], bool] = getattr(judge, "settled", lambda _digest: True)
        self.own_pid = os.getpid()
        self.trips = 0
        self.last_trip: tuple[float, str] | None = None
        self.broken = ""
        self._listener: Listener | None = None
        self._skipped: list[Mount] = []
        self._all_mounts: list[Mount] = []
        self._remark = False
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, name="fanotify-watchdog", daemon=True
        )
        self._retired: dict[str, int] = {}
        # Files whose verdict made the watchdog trip: allowed unjudged from then on, or the
        # same held exec would reach the new listener and trip it again.
        self.fail_open_keys: set[bytes] = set()
        self._restarts: list[float] = []
        # The watchdog ticks only while verdicts are being asked for; else it sleeps.
        self.watching = True
        self._seen_events = 0
        self._quiet_since = time.monotonic()
        self._alarm_r, self._alarm_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def start(self) -> None:
        if not has_capability(CAP_SYS_ADMIN):
            raise SensorUnavailable("not root: cannot block before execution")
        try:
            listener = self._new_listener()
        except OSError as exc:
            raise SensorUnavailable(f"fanotify unavailable ({exc.strerror})") from None
        if not listener.marked:
            listener.stop()
            raise SensorUnavailable("fanotify could not watch any filesystem")
        self._listener = listener
        self._supervisor.start()

    def _new_listener(self) -> Listener:
        listener = Listener(self)
        try:
            listener.policy = self.policy
            listener.mark(self._mounts(), self._all_mounts)
            listener.start()
        except BaseException:
            listener.stop()
            raise
        return listener

    def _mounts(self) -> list[Mount]:
        restrictions = self.policy.restrictions
        network = restrictions.fstypes if restrictions.config.active else ()
        self._all_mounts = read_mounts()
        chosen, self._skipped = select_mounts(
            self._all_mounts, self.settings.exclude_mounts, network
        )
        return chosen

    def set_policy(self, policy: Policy) -> None:
        if policy.restrictions.fstypes != self.policy.restrictions.fstypes or (
            policy.restrictions.config.active != self.policy.restrictions.config.active
        ):
            self._remark = True  # network filesystems to watch (or not) changed
            self.alarm()
        self.policy = policy  # the verdict thread picks it up before its next verdict
        listener = self._listener
        if listener is not None:
            listener.wake()

    def stop(self) -> None:
        self._stopping.set()
        self.alarm()
        if self._supervisor.is_alive():
            self._supervisor.join(5)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
        if self._alarm_r >= 0 and not self._supervisor.is_alive():
            os.close(self._alarm_r)  # an abandoned listener never writes to it again
            os.close(self._alarm_w)
            self._alarm_r = self._alarm_w = -1

    # --- watchdog --------------------------------------------------------------------------
    def alarm(self) -> None:
        """Wake the watchdog (from the verdict thread: one non-blocking write, no lock)."""
        self.watching = True
        try:
            os.write(self._alarm_w, b"!")
        except OSError:  # full: a wake-up is pending anyway
            pass

    def _supervise(self) -> None:
        """Sleep until something needs watching: a verdict in progress, a changed mount
        table (POLLPRI on mountinfo), a policy change, a dead verdict thread or a stop."""
        scheduling.foreground()  # it lets held execs run when the verdict thread hangs
        mountinfo = open("/proc/self/mountinfo", "rb")
        poller = select.poll()
        poller.register(mountinfo, select.POLLPRI | select.POLLERR)
        poller.register(self._alarm_r, select.POLLIN)
        rescan_s = self.settings.mount_rescan_s
        next_scan = time.monotonic() + rescan_s if rescan_s else None
        tick = min(0.2, self.settings.watchdog_timeout_s / 4)
        try:
            while not self._stopping.is_set():
                if self.watching or self._listener is None:
                    timeout = tick
                elif next_scan is not None:
                    timeout = max(0.0, next_scan - time.monotonic())
                else:
                    timeout = None  # nothing to watch: block until told
                ready = dict(poller.poll(None if timeout is None else int(timeout * 1000) + 1))
                if self._stopping.is_set():
                    break
                if self._alarm_r in ready:
                    self._drain_alarm()
                try:
                    next_scan = self._watch(mountinfo, mountinfo.fileno() in ready, next_scan)
                except Exception:  # the watchdog itself must never die
                    log.exception("fanotify watchdog")
        finally:
            mountinfo.close()

    def _drain_alarm(self) -> None:
        try:
            while os.read(self._alarm_r, 512):
                pass
        except OSError:
            pass

    def _watch(
        self, mountinfo: BinaryIO, mounts_changed: bool, next_scan: float | None
    ) -> float | None:
        """One look; returns when the mount table is next rescanned regardless (None: only
        when it changes)."""
        listener = self._listener
        now = time.monotonic()
        if listener is None:
            self._restart(None, self.broken or "no listener")
        elif listener.busy_since and now - listener.busy_since > self.settings.watchdog_timeout_s:
            self._restart(listener, f"a verdict took over {self._timeout_text()}")
        elif not listener.thread.is_alive():
            self._restart(listener, "the verdict thread stopped")
        elif mounts_changed or (next_scan is not None and now >= next_scan) or self._remark:
            self._remark = False
            mountinfo.seek(0)
            mountinfo.read()  # re-arms POLLPRI
            try:
                listener.mark(self._mounts(), self._all_mounts)
            except OSError as exc:
                log.warning("fanotify: cannot rescan mounts: %s", exc)
            rescan_s = self.settings.mount_rescan_s
            return now + rescan_s if rescan_s else None
        else:
            self._disarm(listener, now)
        return next_scan

    def _disarm(self, listener: Listener, now: float) -> None:
        """Stop ticking once no verdict has been asked for a while.

        The verdict thread re-arms the watchdog (:meth:`alarm`) when it starts a batch while
        ``watching`` is False; setting it False before looking at ``busy_since`` leaves no
        gap between the two threads.
        """
        events = listener.counts["events"]
        if listener.busy_since or events != self._seen_events:
            self._seen_events, self._quiet_since = events, now
            return
        if now - self._quiet_since >= DISARM_AFTER_S:
            self.watching = False
            if listener.busy_since:  # a verdict started meanwhile: keep watching
                self.watching = True

    def _timeout_text(self) -> str:
        return f"{self.settings.watchdog_timeout_s:g} s"

    def _restart(self, old: Listener | None, reason: str) -> None:
        """Replace ``old``: the new group watches before the old one fails open (no gap)."""
        new: Listener | None = None
        if old is not None and old.current_key:
            if len(self.fail_open_keys) >= 1024:
                self.fail_open_keys.clear()
            self.fail_open_keys.add(old.current_key)
        recent = [t for t in self._restarts if time.monotonic() - t < 10]
        self._restarts = [*recent, time.monotonic()]
        if len(recent) >= 3:  # failing again and again: stay open a while, then retry
            self.broken = f"fanotify listener failing repeatedly ({reason}); retrying in 30 s"
            self._retire(old, reason)
            self._listener = None
            log.error("%s", self.broken)
            self._stopping.wait(30)
            return
        try:
            new = self._new_listener()
            self.broken = ""
        except Exception as exc:
            self.broken = f"fanotify listener cannot restart ({exc})"
        self._retire(old, reason)
        self._listener = new
        if new is None:
            log.error("%s", self.broken)
            self._stopping.wait(5)

    def _retire(self, old: Listener | None, reason: str) -> None:
        if old is None:
            return
        self.trips += 1
        self.last_trip = (time.time(), reason)  # reported before the held exec resumes
        old.abandon()  # fail open: the kernel allows everything this group holds
        for name, value in old.counts.items():
            self._retired[name] = self._retired.get(name, 0) + value
        log.error("fanotify watchdog: %s; failed open, listener replaced", reason)

    # --- reporting -------------------------------------------------------------------------
    def health(self) -> tuple[bool, str]:
        listener = self._listener
        if listener is None:
            return False, self.broken or "fanotify listener not running"
        marked = list(listener.marked.values())  # one C-level copy: safe against the marker
        failed = list(listener.failed.values())
        root = any(m.mount_point == "/" for m in marked)
        detail = f"blocks before execution on {len({m.mount_point for m in marked})} filesystems"
        healthy = root
        if not root:
            detail += "; the root filesystem is not watched"
        if failed:
            detail += f"; not watched: {', '.join(sorted(failed))}"
        if self.last_trip and time.time() - self.last_trip[0] < TRIP_MEMORY_S:
            healthy = False
            when = time.strftime("%H:%M:%S", time.gmtime(self.last_trip[0]))
            detail = (
                f"watchdog failed open at {when} UTC ({self.last_trip[1]}; {self.trips} total); "
                "listener restarted; " + detail
            )
        return healthy, detail[:255]

    def stats(self) -> dict[str, int]:
        totals = dict(self._retired)
        listener = self._listener
        if listener is not None:
            for name, value in listener.counts.items():
                totals[name] = totals.get(name, 0) + value
            totals["cache_entries"] = len(listener.cache)
            totals["ignore_marks"] = listener.ignores
        totals["watchdog_trips"] = self.trips
        return totals

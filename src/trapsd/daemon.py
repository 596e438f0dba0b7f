"""``trapsd run``: wires the sensor, the event writer, the ESM link and the control socket.

Threads: the sensor's own (verdict + watchdog, or kill loop); ``writer`` (detections ->
durable outbox -> wake the link); ``comms`` (check-in and upload); ``control`` (local socket).
The main thread only waits for SIGTERM/SIGINT. Every thread sleeps until it has something to
do (no periodic wake-ups): an idle agent uses next to no CPU.

The Agent is assembled from mixins, one module each: :mod:`trapsd.detection_pipeline`
(sensors -> journal -> outbox), :mod:`trapsd.esm_link` (check-in request and reply),
:mod:`trapsd.agent_reporting` (module states, status, control commands) and
:mod:`trapsd.actions.host` (what the one-time actions use).
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import signal
import threading
import uuid
from collections import deque
from typing import Any

from trapsapi.errors import TrapsError
from trapsd import __version__, policylog, scheduling
from trapsd.actions.dispatcher import Dispatcher
from trapsd.actions.host import ActionHost, remove_state
from trapsd.actions.quarantine import with_local_blocks
from trapsd.agent_reporting import AgentReporting, now_text
from trapsd.behaviour.engine import BehaviourEngine
from trapsd.checkin import Comms
from trapsd.config import AgentSettings
from trapsd.control import ControlServer, socket_path
from trapsd.detection_pipeline import QUEUE_MAX, RECENT_EVENTS, STOP, DetectionPipeline
from trapsd.esm_link import EsmLink
from trapsd.exec_rules import ModuleConfig, decide
from trapsd.files import ensure_private_dir
from trapsd.footprint import FootprintMeter
from trapsd.forensics import Forensics
from trapsd.hardening import MemfdNoexec
from trapsd.identity import load_identity
from trapsd.journal import Journal, journal_path
from trapsd.memory import release_free_memory
from trapsd.outbox import Outbox, outbox_path
from trapsd.policy import (
    Policy,
    PolicyError,
    default_policy,
    load_policy,
    save_policy,
)
from trapsd.ratelimit import EventLimiter
from trapsd.sensors.base import Judge, Sensor, SensorUnavailable, create_sensor
from trapsd.verdicts import Verdicts
from trapsd.wake import Waker

log = logging.getLogger(__name__)
LOCK_FILE = "trapsd.lock"
_STOP_BYTES = frozenset((0, signal.SIGTERM, signal.SIGINT))


def _mode(config: ModuleConfig) -> str:
    return config.mode if config.enabled else "disabled"


class Agent(ActionHost, DetectionPipeline, EsmLink, AgentReporting):
    def __init__(self, settings: AgentSettings, judge: Judge = decide) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.judge = judge
        self.stopping = threading.Event()
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        os.set_blocking(self._stop_r, True)  # the main thread sleeps on it
        self.started_at = now_text()
        # Per process: the server tells two live copies of one identity apart by it.
        self.instance_id = uuid.uuid4().hex
        self.sensor: Sensor | None = None
        self.sensor_error = ""
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_MAX)
        self.queue_drops = 0
        self._drops_counted = 0
        self._sensor_lock = threading.RLock()
        self._status_lock = threading.Lock()
        self._lock_fd = -1
        self._shut_down = False
        self._threads: list[threading.Thread] = []
        self.comms: Comms | None = None
        self.verdicts: Verdicts | None = None
        self.journal: Journal | None = None
        self.waker: Waker | None = None
        self.control: ControlServer | None = None
        self.policy: Policy = default_policy()
        self.limiter = EventLimiter(settings.event_repeat_window_s)
        self.memfd = MemfdNoexec(self.state_dir)
        self._refused_version: object = None
        self.stop_authorised = False
        self.behaviour: BehaviourEngine | None = None
        self.behaviour_error = ""
        self.forensics = Forensics(
            self.state_dir,
            settings.forensics_max_bytes,
            settings.forensics_max_bundles,
            settings.forensics_timeout_s,
            settings.forensics_memory_dump_bytes,
        )
        self.recent_events: deque[dict[str, Any]] = deque(maxlen=RECENT_EVENTS)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        os.umask(0o077)
        if self.settings.batch_scheduling:
            scheduling.background()  # before any thread starts: they inherit it
        ensure_private_dir(self.state_dir)
        self._lock_state_dir()
        self.identity = load_identity(self.state_dir)
        try:
            self.policy = load_policy(self.state_dir) or default_policy()
        except (PolicyError, TrapsError) as exc:
            log.error("ignoring the saved policy: %s", exc)
        self.policy = with_local_blocks(self.policy, self.state_dir)
        self.outbox = Outbox(outbox_path(self.state_dir), self.settings.outbox_max_bytes)
        if self.judge is decide:  # the full precedence, learning verdicts as it goes
            self.verdicts = Verdicts(self._query_verdicts)
            self.verdicts.start()
            self.judge = self.verdicts
        self.journal = Journal(journal_path(self.state_dir))
        self._recover_journal()
        self.meter = FootprintMeter(self.state_dir)
        writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        writer.start()
        self._threads.append(writer)
        self._update_sensor(self.policy)
        self.memfd.set(self.policy.memfd_noexec.active)  # also undoes a crashed run's setting
        self._start_behaviour()
        self.comms = Comms(
            self.settings,
            self.identity,
            self.outbox,
            self._checkin_request,
            self._on_reply,
            self._after_checkin,
            self._on_news,
        )
        self.comms.set_heartbeat(self.policy.heartbeat_interval_s)
        self.waker = self._waker(self.comms) if self.settings.wake_channel else None
        self.control = ControlServer(
            socket_path(self.state_dir), self._control, self.settings.control_socket_group
        )
        self.control.start()
        self.comms.start()
        self.actions = Dispatcher(self, self.identity)
        self.actions.start()
        if self.waker is not None:
            self.waker.start()
        self.write_status()
        _, detail = self._sensor_health()
        log.info(
            "trapsd %s running: agent %s, malware module via %s (%s)",
            __version__,
            self.identity.agent_id,
            self.sensor.mechanism if self.sensor else "none",
            detail,
        )

    def _start_behaviour(self) -> None:
        """The behaviour modules' engine: its own threads, never the fanotify one."""
        self.forensics.start()
        engine = BehaviourEngine(
            self.settings,
            self.policy,
            self.emit,
            self.forensics,
            malware_kills=lambda: self.sensor is not None and not self.sensor.can_block,
        )
        try:
            engine.start()
        except OSError as exc:  # /proc unreadable: the modules report it, enforcement goes on
            engine.stop()
            self.behaviour_error = f"behaviour engine unavailable: {exc}"
            log.error("%s", self.behaviour_error)
            return
        self.behaviour = engine

    def _lock_state_dir(self) -> None:
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TrapsError(f"another trapsd is running with state dir {self.state_dir}") from None
        self._lock_fd = fd

    def run(self) -> None:
        """Start, then block until SIGTERM/SIGINT (or :meth:`request_stop`), then stop."""
        # The C-level handler writes to the wake pipe; the main thread blocks on it with no
        # timeout (a Python handler calling Event.set() could deadlock on the Event's lock).
        previous_fd = signal.set_wakeup_fd(self._stop_w, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        try:
            self.start()
            release_free_memory()  # what start-up allocated and freed leaves the RSS
            while not self.stopping.is_set():
                woken_by = os.read(self._stop_r, 64)  # signal numbers, or 0 from request_stop
                if _STOP_BYTES.intersection(woken_by):
                    break
            self.stopping.set()
            log.info("stopping")
        finally:
            signal.set_wakeup_fd(previous_fd)
            self.shutdown()
            if self.uninstalling:
                remove_state(self.state_dir)

    def request_stop(self) -> None:
        """From any thread: the main thread wakes up and stops the agent."""
        self.stopping.set()
        if self._stop_w >= 0:
            try:
                os.write(self._stop_w, b"\0")
            except OSError:  # a stop is pending already (the pipe is full)
                pass

    def shutdown(self) -> None:
        """Stop in the order that keeps the host safe: the exec sensor first (fail open)."""
        if self._shut_down:
            return
        self._shut_down = True
        self.stopping.set()
        with self._sensor_lock:
            if self.sensor is not None:
                self.sensor.stop()
        if self.behaviour is not None:
            self.behaviour.stop()
        if self.memfd.applied:
            self.memfd.set(False)  # the host gets back the value the agent found
        if self.control is not None:
            self.control.stop()
        if self.verdicts is not None:
            self.verdicts.stop()
        if self.actions is not None:
            self.actions.stop()
        if hasattr(self, "outbox"):
            self.queue.put(STOP)
            for thread in self._threads:
                thread.join(5)
        if self.waker is not None:
            self.waker.stop()
        if self.comms is not None:
            self.comms.stop()
            self.comms.farewell()
        if hasattr(self, "outbox"):
            self.forensics.stop()
            self.write_status(running=False)
            self.outbox.close()
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        stop_r, stop_w, self._stop_r, self._stop_w = self._stop_r, self._stop_w, -1, -1
        for fd in (stop_r, stop_w):
            os.close(fd)

    # --- sensor ----------------------------------------------------------------------------
    def _update_sensor(self, policy: Policy) -> None:
        with self._sensor_lock:
            if policy.exec_active and self.sensor is None:
                try:
                    self.sensor = create_sensor(self.settings, policy, self.emit, self.judge, self)
                    self.sensor_error = ""
                except SensorUnavailable as exc:
                    self.sensor_error = f"no exec sensor available: {exc}"
                    log.error("%s", self.sensor_error)
            elif not policy.exec_active and self.sensor is not None:
                self.sensor.stop()
                self.sensor = None
            elif self.sensor is not None:
                self.sensor.set_policy(policy)

    def apply_policy(self, policy: Policy) -> None:
        """Persist, then switch: enforcement after a restart equals enforcement now."""
        previous = self.policy
        policy = with_local_blocks(policy, self.state_dir)  # quarantined hashes stay blocked
        if policy.wire is not None:
            try:
                save_policy(self.state_dir, policy.wire)
            except OSError as exc:
                log.error("cannot save the policy (enforcing it anyway): %s", exc)
        self.policy = policy
        self._update_sensor(policy)
        if self.behaviour is not None:
            self.behaviour.set_policy(policy)
        self.memfd.set(policy.memfd_noexec.active)
        if self.comms is not None:
            self.comms.set_heartbeat(policy.heartbeat_interval_s)
        policylog.record(
            self.state_dir,
            {
                "result": "applied",
                "from_version": previous.version,
                "to_version": policy.version,
                "changed": policylog.changed_sections(previous.wire, policy.wire or {}),
            },
        )
        log.info(
            "policy %s applied: malware %s, %d blocked hashes; restrictions %s; child_process %s",
            policy.version,
            _mode(policy.malware),
            len(policy.blocked),
            _mode(policy.restrictions.config),
            _mode(policy.child_process.config),
        )

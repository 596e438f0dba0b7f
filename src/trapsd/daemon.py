"""``trapsd run``: wires the sensor, the event writer, the ESM link and the control socket.

Threads: the sensor's own (verdict + watchdog, or kill loop); ``writer`` (detections ->
durable outbox -> wake the link); ``comms`` (check-in and upload); ``control`` (local socket).
The main thread only waits for SIGTERM/SIGINT.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import queue
import signal
import threading
import time
import uuid
from collections import deque
from typing import Any

from trapsapi.agent_client import AgentClient
from trapsapi.errors import TrapsError
from trapsapi.wire import (
    AgentVerdictQuery,
    AgentVerdicts,
    CheckinRequest,
    CheckinResponse,
    ModuleState,
)
from trapsd import __version__, hostinfo, policylog
from trapsd.actions.dispatcher import Dispatcher
from trapsd.actions.host import ActionHost, remove_state
from trapsd.actions.quarantine import with_local_blocks
from trapsd.behaviour.engine import BehaviourEngine
from trapsd.behaviour.health import idle_states
from trapsd.checkin import Comms
from trapsd.config import AgentSettings
from trapsd.console.access import visibility as console_visibility
from trapsd.control import ControlServer, socket_path
from trapsd.defaults import BEHAVIOUR_MODULES, CHILD_PROCESS, MEMFD_NOEXEC, RESTRICTIONS
from trapsd.events import Detection, build_event
from trapsd.files import ensure_private_dir, write_json
from trapsd.footprint import FootprintMeter
from trapsd.forensics import Forensics
from trapsd.hardening import MemfdNoexec
from trapsd.identity import load_identity
from trapsd.journal import Journal, journal_path
from trapsd.outbox import Outbox, outbox_path
from trapsd.policy import (
    MALWARE,
    ModuleConfig,
    Policy,
    PolicyError,
    compile_policy,
    decide,
    default_policy,
    load_policy,
    save_policy,
)
from trapsd.ratelimit import EventLimiter
from trapsd.sensors.base import Judge, Sensor, SensorUnavailable, create_sensor
from trapsd.status import STATUS_FILE
from trapsd.verdicts import Verdicts
from trapsd.wake import Waker

log = logging.getLogger(__name__)
VERDICT_QUERY_TIMEOUT_S = 3.0
LOCK_FILE = "trapsd.lock"
QUEUE_MAX = 10_000
RECENT_EVENTS = 200  # `trapsd events` shows these (the outbox empties once uploaded)
WRITE_BATCH = 500
_STOP = object()


def _mode(config: ModuleConfig) -> str:
    return config.mode if config.enabled else "disabled"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class Agent(ActionHost):
    def __init__(self, settings: AgentSettings, judge: Judge = decide) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.judge = judge
        self.stopping = threading.Event()
        self.started_at = _now()
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
            self.write_status,
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
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        try:
            self.start()
            while not self.stopping.wait(1.0):
                pass
            log.info("stopping")
        finally:
            self.shutdown()
            if self.uninstalling:
                remove_state(self.state_dir)

    def request_stop(self) -> None:
        self.stopping.set()

    def _authorised_stop(self, command: str, password: object) -> dict[str, Any]:
        """``trapsd stop|uninstall``: only with the policy's password (when it sets one); a
        wrong one is refused and reported to the ESM as a tamper event."""
        if not isinstance(password, str) or not self.policy.agent.password_matches(password):
            log.warning("TAMPER: %s refused (wrong or missing password)", command)
            self.emit(
                Detection(
                    "notified",
                    f"trapsd {command}",
                    None,
                    None,
                    module="tamper",
                    severity="medium",
                    details={"attempt": command, "reason": "wrong or missing stop password"},
                )
            )
            return {"ok": False, "error": "wrong or missing stop password", "exit_code": 4}
        log.warning("%s authorised by password: the agent stops", command)
        self.stop_authorised = True
        self.uninstalling = self.uninstalling or command == "uninstall"
        self.stopping.set()
        return {"ok": True, "command": command}

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
            self.queue.put(_STOP)
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

    # --- sensor ----------------------------------------------------------------------------
    def emit(self, detection: Detection) -> None:
        """Called on sensor threads: never blocks (a full queue is counted, not waited on).

        The detection goes into the crash journal first (a memory write), so a SIGKILL
        before the writer has committed it to the outbox loses nothing.
        """
        journal, slot = self.journal, -1
        if journal is not None:
            try:
                slot = journal.append(detection)
            except ValueError:  # closed by a concurrent shutdown
                slot = -1
        try:
            self.queue.put_nowait((slot, detection))
        except queue.Full:
            self.queue_drops += 1

    def _update_sensor(self, policy: Policy) -> None:
        with self._sensor_lock:
            if policy.exec_active and self.sensor is None:
                try:
                    self.sensor = create_sensor(self.settings, policy, self.emit, self.judge)
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

    def _sensor_health(self) -> tuple[bool, str]:
        with self._sensor_lock:
            if self.sensor is not None:
                return self.sensor.health()
            if not self.policy.exec_active:
                return True, "disabled by policy"
            return False, self.sensor_error or "not running"

    def module_states(self) -> list[ModuleState]:
        """One state per exec module: they share the exec sensor, so its health is theirs."""
        policy = self.policy
        healthy, detail = self._sensor_health()
        sensor = self.sensor
        mechanism = sensor.mechanism if sensor else "none"
        states: list[ModuleState] = []
        modules = (
            (MALWARE, policy.malware),
            (RESTRICTIONS, policy.restrictions.config),
            (CHILD_PROCESS, policy.child_process.config),
        )
        for name, config in modules:
            state_healthy, state_detail = healthy, detail
            if not config.active:
                state_healthy, state_detail = True, "disabled by policy"
            elif sensor is not None and not sensor.can_block and name != MALWARE:
                state_healthy = False
                state_detail = f"cannot decide before execution, acts after start: {detail}"
            states.append(
                {
                    "name": name,
                    "enabled": config.enabled,
                    "mode": config.mode,
                    "mechanism": mechanism if config.active else "none",
                    "healthy": state_healthy,
                    "detail": state_detail[:255],
                }
            )
        memfd = policy.memfd_noexec
        memfd_healthy, memfd_detail = self.memfd.state(memfd.active)
        states.append(
            {
                "name": MEMFD_NOEXEC,
                "enabled": memfd.enabled,
                "mode": memfd.mode,
                "mechanism": "sysctl" if memfd.active else "none",
                "healthy": memfd_healthy,
                "detail": memfd_detail,
            }
        )
        return states + self._behaviour_states()

    def _behaviour_states(self) -> list[ModuleState]:
        if self.behaviour is not None:
            return self.behaviour.module_states()
        return idle_states(self.policy, self.behaviour_error)

    # --- writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        stop = False
        while not stop:
            try:
                item = self.queue.get(timeout=1.0)
            except queue.Empty:
                item = None
            batch: list[Detection] = []
            slots: list[int] = []
            now = time.monotonic()
            while item is not None:
                if item is _STOP:
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

    # --- ESM link --------------------------------------------------------------------------
    def _waker(self, comms: Comms) -> Waker:
        """The long-poll thread; its client follows the identity's current server list."""

        def client(timeout: float) -> AgentClient:
            identity = self.identity
            return AgentClient(
                identity.servers,
                identity.agent_id,
                identity.agent_secret,
                timeout,
                self.settings.ca_file,
            )

        return Waker(
            self.settings, client, lambda: comms.policy_version, lambda _r: comms.wake(), comms.news
        )

    def _checkin_request(self) -> CheckinRequest:
        return {
            "hostname": hostinfo.hostname(),
            "os": hostinfo.os_name(),
            "os_version": hostinfo.os_version(),
            "agent_version": __version__,
            "ips": hostinfo.ip_addresses(),
            "modules": self.module_states(),
            "footprint": self.meter.measure(),
            "policy_version": self.policy.version,
            "outbox_depth": self.outbox.depth,
            "events_dropped": self.outbox.dropped,
            "instance_id": self.instance_id,
            "stopping": self.stopping.is_set(),
        }

    def _query_verdicts(self, query: AgentVerdictQuery) -> AgentVerdicts:
        """On the analyst thread: its own short-lived client, a short timeout."""
        identity = self.identity
        client = AgentClient(
            identity.servers,
            identity.agent_id,
            identity.agent_secret,
            min(self.settings.request_timeout_s, VERDICT_QUERY_TIMEOUT_S),
            self.settings.ca_file,
        )
        try:
            return client.verdicts(query)
        finally:
            client.close()

    def _on_reply(self, reply: CheckinResponse) -> None:
        self._apply(reply["policy"], reply.get("actions"))

    def _on_news(self, reply: dict[str, Any]) -> None:
        """What the wake channel brought: maybe a policy, maybe actions."""
        self._apply(reply.get("policy"), reply.get("actions"))

    def _apply(self, wire: Any, actions: Any) -> None:
        """Compile first; switch only to a valid policy (a bad one leaves the old in force)."""
        if wire is not None:
            try:
                policy = compile_policy(wire)
            except PolicyError as exc:
                version = wire.get("version") if isinstance(wire, dict) else None
                if version != self._refused_version:  # once per version, not every check-in
                    self._refused_version = version
                    policylog.record(
                        self.state_dir,
                        {
                            "result": "refused",
                            "from_version": self.policy.version,
                            "to_version": version,
                            "error": exc.message,
                        },
                    )
                raise
            current = self.policy
            if policy.wire != current.wire or policy.version != current.version:
                self.apply_policy(policy)
        if actions and self.actions is not None:
            self.actions.receive(actions)

    # --- status and control ----------------------------------------------------------------
    def status(self, running: bool = True) -> dict[str, Any]:
        link = self.comms.snapshot() if self.comms is not None else {}
        sensor = self.sensor
        modules = self.module_states()
        if not running:  # what status.json says once the daemon is gone: nothing protects
            stopped = f"trapsd stopped at {_now()}"
            modules = [{**m, "healthy": False, "detail": stopped} for m in modules]
        return {
            "version": __version__,
            "agent_id": self.identity.agent_id,
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "running": running,
            "started_at": self.started_at,
            "updated_at": _now(),
            **link,
            "policy_version": self.policy.version,
            "outbox_depth": self.outbox.depth,
            "events_dropped": self.outbox.dropped,
            "modules": modules,
            "sensor_stats": sensor.stats() if sensor else {},
            "behaviour_stats": self.behaviour.stats() if self.behaviour else {},
            "console": console_visibility(self.policy.wire),
        }

    def write_status(self, running: bool = True) -> None:
        if running and self.stopping.is_set():
            return  # a late writer must not undo the final "not running"
        with self._status_lock:
            try:
                write_json(self.state_dir / STATUS_FILE, self.status(running))
            except OSError as exc:
                log.warning("cannot write %s: %s", STATUS_FILE, exc)

    def _control(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "status":
            return {"ok": True, "status": self.status()}
        if command == "policy-log":
            return {"ok": True, "entries": policylog.read(self.state_dir)}
        if command == "checkin" and self.comms is not None:
            timeout = self.settings.request_timeout_s * (len(self.identity.servers) + 1) + 5
            started = time.monotonic()
            result = self.comms.checkin_now(timeout)
            result["elapsed_s"] = round(time.monotonic() - started, 3)
            return result
        if command in ("stop", "uninstall"):
            return self._authorised_stop(command, request.get("password"))
        if command == "rotate" and self.comms is not None:
            timeout = self.settings.request_timeout_s * (len(self.identity.servers) + 1) * 2 + 5
            return self.comms.rotate_now(timeout)
        if command in ("quarantine-list", "quarantine-restore"):
            return self.control_quarantine(request)
        from trapsd.inspection import handle  # the local inspection verbs

        reply = handle(self, request)
        if reply is not None:
            return reply
        return {"ok": False, "error": f"unknown command {command!r}", "exit_code": 2}

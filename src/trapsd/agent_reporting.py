"""What the agent reports about itself (mixed into ``trapsd.daemon.Agent``): module states,
``status`` (control socket and status.json), the control-socket commands, and the
password-checked ``trapsd stop|uninstall``."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from trapsapi.wire import ModuleState
from trapsd import __version__, policylog
from trapsd.actions.dispatcher import Dispatcher
from trapsd.behaviour.engine import BehaviourEngine
from trapsd.behaviour.health import idle_states
from trapsd.checkin import Comms
from trapsd.config import AgentSettings
from trapsd.console.access import visibility as console_visibility
from trapsd.defaults import CHILD_PROCESS, MEMFD_NOEXEC, RESTRICTIONS
from trapsd.events import Detection
from trapsd.exec_rules import MALWARE
from trapsd.files import write_json
from trapsd.hardening import MemfdNoexec
from trapsd.identity import Identity
from trapsd.outbox import Outbox
from trapsd.policy import Policy
from trapsd.sensors.base import Sensor
from trapsd.status import STATUS_FILE

if TYPE_CHECKING:
    from trapsd.daemon import Agent

log = logging.getLogger("trapsd.daemon")


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class AgentReporting:
    settings: AgentSettings
    state_dir: Path
    identity: Identity
    policy: Policy
    sensor: Sensor | None
    sensor_error: str
    _sensor_lock: threading.RLock
    _status_lock: threading.Lock
    memfd: MemfdNoexec
    behaviour: BehaviourEngine | None
    behaviour_error: str
    comms: Comms | None
    outbox: Outbox
    started_at: str
    stopping: threading.Event
    stop_authorised: bool
    uninstalling: bool
    actions: Dispatcher | None

    if TYPE_CHECKING:  # provided by the other parts of the Agent

        def emit(self, detection: Detection) -> None: ...

        def request_stop(self) -> None: ...

        def control_quarantine(self, request: dict[str, Any]) -> dict[str, Any]: ...

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

    def status(self, running: bool = True) -> dict[str, Any]:
        link = self.comms.snapshot() if self.comms is not None else {}
        sensor = self.sensor
        modules = self.module_states()
        if not running:  # what status.json says once the daemon is gone: nothing protects
            stopped = f"trapsd stopped at {now_text()}"
            modules = [{**m, "healthy": False, "detail": stopped} for m in modules]
        return {
            "version": __version__,
            "agent_id": self.identity.agent_id,
            "state_dir": str(self.state_dir),
            "pid": os.getpid(),
            "running": running,
            "started_at": self.started_at,
            "updated_at": now_text(),
            **link,
            "policy_version": self.policy.version,
            "outbox_depth": self.outbox.depth,
            "events_dropped": self.outbox.dropped,
            "modules": modules,
            "sensor_stats": sensor.stats() if sensor else {},
            "behaviour_stats": self.behaviour.stats() if self.behaviour else {},
            "console": console_visibility(self.policy.wire),
            # native thread id -> name: per-thread CPU from /proc/PID/task (bench, support)
            "threads": {str(t.native_id): t.name for t in threading.enumerate()},
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
        if command == "logs-collect":
            return self._collect_logs(request)
        from trapsd.inspection import handle  # the local inspection verbs

        reply = handle(cast("Agent", self), request)  # only ever mixed into the Agent
        if reply is not None:
            return reply
        return {"ok": False, "error": f"unknown command {command!r}", "exit_code": 2}

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
        self.request_stop()
        return {"ok": True, "command": command}

    def _collect_logs(self, request: dict[str, Any]) -> dict[str, Any]:
        """``trapsd logs collect``: the same bundle as the ``retrieve_logs`` action."""
        from trapsd.log_collection import daemon_reply

        actions, lines = [], []
        if self.actions is not None:
            store = self.actions.store
            actions = [a.public() for a in store.history() + store.unfinished()]
            lines = list(self.actions.ring.lines)
        return daemon_reply(self.status(), self.settings, actions, lines, request)

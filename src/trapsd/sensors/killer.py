"""Detect-and-kill: the fallback when execution cannot be blocked (not root, no fanotify).

A process is judged by the file behind /proc/PID/exe; a malware verdict in prevention mode
sends SIGKILL through a pidfd, so a recycled pid can never hit an innocent process.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import threading

import psutil

from trapsapi.enums import EventAction
from trapsd.config import AgentSettings
from trapsd.events import exec_detection, parent_images
from trapsd.exec_rules import ALLOW, DENY, MALWARE, Finding, decide_exec
from trapsd.policy import Policy
from trapsd.sensors.base import Emit, Judge
from trapsd.sensors.hashing import HashCache, Hasher, cache_key

log = logging.getLogger(__name__)


class KillSensor:
    """Common thread, policy and reporting for the proc-connector and psutil-poll sensors."""

    mechanism = "kill"
    can_block = False

    def __init__(
        self, settings: AgentSettings, policy: Policy, emit: Emit, judge: Judge, why: str
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.emit = emit
        self.judge = judge
        self.why = why or "mechanism chosen by settings: cannot block before execution"
        self.own_pid = os.getpid()
        self.cache = HashCache(settings.verdict_cache_size)
        self.hasher = Hasher()
        self.counts = {"events": 0, "killed": 0, "notified": 0, "missed": 0, "too_large": 0}
        self.rescan_wanted = True  # judge every running process once at start
        self._stopping = threading.Event()
        self.crashed = ""
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fd_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name=self.mechanism, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("%s sensor stopped", self.mechanism)

    def _run(self) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        with self._fd_lock:
            if not self._closed:
                try:
                    os.write(self._wake_w, b"x")
                except OSError:
                    pass

    def stop(self) -> None:
        self._stopping.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._fd_lock:
            if not self._closed:
                self._closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy
        self.rescan_wanted = True  # processes already running may be blocked now
        self.wake()

    def drain_wake(self) -> None:
        try:
            os.read(self._wake_r, 512)
        except OSError:
            pass

    def health(self) -> tuple[bool, str]:
        if self.crashed:
            return False, f"{self.mechanism} sensor stopped: {self.crashed}"[:255]
        return False, f"{self.why}; detects and kills after start"[:255]

    def stats(self) -> dict[str, int]:
        return {**self.counts, "cache_entries": len(self.cache)}

    def rescan(self) -> dict[int, bytes]:
        """Judge every running process: {pid: executable key} of a snapshot taken first."""
        self.rescan_wanted = False
        judged: dict[int, bytes] = {}
        for pid in sorted(psutil.pids()):
            if self._stopping.is_set():
                break
            judged[pid] = self.inspect(pid)
        return judged

    def inspect(self, pid: int, judged: bytes = b"") -> bytes:
        """Judge the executable of ``pid``; kill it on a malware verdict in prevention mode.

        Returns the executable's cache key; ``judged`` (a key returned before) skips the
        verdict when the process still runs the same file.
        """
        policy = self.policy
        if pid == self.own_pid or not policy.exec_active:
            return b""
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return b""
        try:
            return self._inspect(pid, pidfd, policy, judged)
        except OSError:
            self.counts["missed"] += 1
            return b""
        finally:
            os.close(pidfd)

    def _inspect(self, pid: int, pidfd: int, policy: Policy, judged: bytes) -> bytes:
        try:
            exe_fd = os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return b""  # kernel thread, already gone, or not ours to judge
        findings: list[Finding] = []
        digest: bytes | None = None
        try:
            st = os.fstat(exe_fd)
            key = cache_key(st)
            if key == judged:
                return key
            if policy.malware.active:
                digest = self.cache.get(key)
                if digest is None and st.st_size > self.settings.hash_max_bytes:
                    self.counts["too_large"] += 1
                elif digest is None:
                    digest = self.hasher.sha256_fd(exe_fd)
                    self.cache.put(key, digest)
        finally:
            os.close(exe_fd)
        self.counts["events"] += 1
        try:
            path = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return key  # gone meanwhile
        if digest is not None:
            decision = self.judge(policy, digest, path)
            if decision != ALLOW:
                findings.append(Finding(MALWARE, decision, "sha256"))
        findings += decide_exec(policy, path, None, lambda: parent_images(pid, before_exec=False))
        if not findings:
            return key
        detections = exec_detection(
            findings, path, digest, pid, self.mechanism, policy.version, can_block=False
        )
        if any(f.decision == DENY for f in findings):
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                _await_exit(pidfd)
            except ProcessLookupError:
                for d in detections:
                    d.action, d.details["exited_before_kill"] = EventAction.NOTIFIED, True
            except PermissionError:
                for d in detections:
                    d.action, d.details["kill_error"] = EventAction.NOTIFIED, "permission denied"
        for detection in detections:
            self.counts["killed" if detection.action == EventAction.KILLED else "notified"] += 1
            self.emit(detection)
        return key


def _await_exit(pidfd: int, timeout_ms: int = 1000) -> None:
    """Wait (bounded) until a killed process is gone, so a rescan that runs next never finds
    it still executing the same image and reports it a second time."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.poll(timeout_ms)

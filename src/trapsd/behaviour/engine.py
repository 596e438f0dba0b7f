"""The behaviour engine: judges process-tree work off the fanotify answering thread.

Threads: ``proctree`` (:mod:`trapsd.behaviour.source`) and ``behaviour`` (this module: the
checks, the kills, the events, and the periodic scans: shells' stdio, W+X memory of protected
processes, /etc/ld.so.preload, tracers in polling mode).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from trapsapi.enums import EventAction, Mode, Severity
from trapsapi.wire import ModuleState
from trapsd.behaviour import probes, rules
from trapsd.behaviour.health import module_states
from trapsd.behaviour.killing import kill_all
from trapsd.behaviour.proctree import Node, ProcTree, read_exe
from trapsd.behaviour.rules import Behaviour, Creds, Image
from trapsd.behaviour.source import (
    ConnectorSource,
    PollSource,
    Source,
    Work,
    WorkQueue,
    tracer_of,
)
from trapsd.config import AgentSettings
from trapsd.defaults import (
    FILELESS,
    LD_PRELOAD,
    PRIVILEGE_ESCALATION,
    PTRACE,
    REVERSE_SHELL,
    WX_MEMORY,
)
from trapsd.events import Detection, build_event, read_proc
from trapsd.forensics import Forensics
from trapsd.policy import Policy
from trapsd.sensors.base import Emit, SensorUnavailable
from trapsd.sensors.hashing import Hasher

log = logging.getLogger(__name__)
SEVERITY = {
    REVERSE_SHELL: Severity.HIGH,
    FILELESS: Severity.HIGH,
    LD_PRELOAD: Severity.MEDIUM,
    PTRACE: Severity.HIGH,
    WX_MEMORY: Severity.MEDIUM,
    PRIVILEGE_ESCALATION: Severity.CRITICAL,
}
LD_SO_PRELOAD = "/etc/ld.so.preload"
SCAN_MAX_PROCESSES = 512
REPORTED_MAX = 4096
WORK_MAX = 10_000


@dataclasses.dataclass(slots=True)
class Hit:
    module: str
    pid: int
    rule: str
    tree: bool = False  # prevention kills the process's descendants too
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


class BehaviourEngine:
    def __init__(
        self,
        settings: AgentSettings,
        policy: Policy,
        emit: Emit,
        forensics: Forensics | None = None,
        ld_so_preload: str = LD_SO_PRELOAD,
        malware_kills: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.emit = emit
        self.forensics = forensics
        self.ld_so_preload = ld_so_preload
        # Whether the malware module runs on a kill sensor, which judges every image after
        # exec (memfds too). fanotify never sees a memfd exec, so then fileless reports it.
        self.malware_kills = malware_kills
        self.own_pid = os.getpid()
        self.tree = ProcTree()
        self.work = WorkQueue(WORK_MAX)
        self.source: Source | None = None
        self.crashed = ""
        self.counts = {"checked": 0, "killed": 0, "notified": 0, "scans": 0}
        self._reported: dict[tuple[str, int, str], None] = {}
        self._preload_seen: tuple[int, int, int] | None = None
        self._hasher: Hasher | None = None  # 256 KiB buffer: only once something is found
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name="behaviour", daemon=True)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        wanted = self.settings.behaviour_mechanism
        source: Source | None = None
        why = "mechanism chosen by settings"
        if wanted in ("auto", "proc-connector"):
            try:
                period = self.settings.behaviour_storm_period_ms / 1000
                source = ConnectorSource(self.tree, self.work, self._wants, period)
            except SensorUnavailable as exc:
                why = str(exc)
        if source is None:
            source = PollSource(
                self.tree, self.work, self._wants, self.settings.poll_interval_s, why
            )
        source.is_shell = lambda exe: self.policy.behaviour.is_shell(exe)
        source.on_exec = self._judge_exec
        self.source = source
        source.start()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self.source is not None:
            self.source.stop()
        self.work.wake(always=True)
        if self._thread.is_alive():
            self._thread.join(5)

    def set_policy(self, policy: Policy) -> None:
        self.policy = policy

    def _wants(self, kind: str) -> bool:
        b = self.policy.behaviour
        if kind == "exec":
            return (
                b.reverse_shell.active
                or b.fileless.active
                or b.ld_preload.active
                or b.privilege_escalation.active
            )
        if kind == "shell":
            return b.reverse_shell.active
        if kind == "uid":
            return b.privilege_escalation.active
        return b.ptrace.active

    # --- the behaviour thread ------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("behaviour engine stopped")

    def _run(self) -> None:
        interval = self.settings.behaviour_scan_interval_s
        next_scan = time.monotonic()
        while not self._stopping.is_set():
            timeout = max(0.0, next_scan - time.monotonic())
            for item in self.work.take(timeout):
                if self._stopping.is_set():
                    return
                if item[0] != "hits":  # an exec's were counted when it was judged
                    self.counts["checked"] += 1
                for hit in self._check(item):
                    self.act(hit)
            if self._stopping.is_set():
                return
            if time.monotonic() >= next_scan:
                self.scan()
                next_scan = time.monotonic() + interval

    def _judge_exec(self, pid: int, before: Creds | None, node: Node) -> list[Work]:
        """An exec's checks, run on the process tree's thread as the exec is read: what they
        read from /proc (environment, stdio, image) is there only while the process lives,
        and waking the behaviour thread for every exec cost the host more than the checks
        (a spawn of /bin/true). Only hits are handed over, to be acted on."""
        self.counts["checked"] += 1
        hits = self._check_exec(self.policy.behaviour, pid, before, node)
        return [("hits", hits)] if hits else []

    def _check(self, item: Work) -> list[Hit]:
        b = self.policy.behaviour
        kind = item[0]
        if kind == "hits":
            return list(item[1])
        if kind == "uid":  # also sent by an exec of a setuid binary, before its exec event
            node: Node = item[3]
            exe = read_exe(item[1])
            if not exe:
                return []  # gone: its image (a trusted setuid tool?) cannot be told
            why = rules.escalation(b, item[2], node.creds, Image(exe, probes.setuid_root(item[1])))
            return [Hit(PRIVILEGE_ESCALATION, item[1], why)] if why else []
        if kind == "shell":  # a fork: the parent's image is already in the tree
            parent = self.tree.get(item[1])
            return self._check_shell(b, item[1], parent.exe if parent else None)
        if kind == "ptrace":
            return self._check_ptrace(b, item[1], item[2])
        if kind == "tracers":
            return [h for n in self._protected(b.ptrace_protects) for h in self._tracer(b, n)]
        if kind == "sweep":
            self._sweep_shells(b)
        return []

    def _image(self, node: Node) -> Image:
        return Image(node.exe, probes.setuid_root(node.pid))

    def _check_exec(self, b: Behaviour, pid: int, before: Creds | None, node: Node) -> list[Hit]:
        hits: list[Hit] = []
        kind = rules.fileless(b, node.exe)
        if kind:
            hits.append(Hit(FILELESS, pid, kind))
        hits += self._check_shell(b, pid, node.exe)
        if b.ld_preload.active:
            bad = rules.untrusted_preloads(b, rules.preloads(probes.environ(pid)))
            if bad:
                hits.append(Hit(LD_PRELOAD, pid, f"LD_PRELOAD={' '.join(bad)}"))
        if before is not None and node.creds.root and not before.root:
            why = rules.escalation(b, before, node.creds, self._image(node))
            if why:
                hits.append(Hit(PRIVILEGE_ESCALATION, pid, why))
        return hits

    def _check_shell(self, b: Behaviour, pid: int, exe: str | None = None) -> list[Hit]:
        if not b.reverse_shell.active:
            return []
        exe = exe if exe is not None else read_exe(pid)
        if not exe or not b.is_shell(exe):
            return []
        why = rules.reverse_shell(b, exe, probes.stdio_peers(pid))
        return [Hit(REVERSE_SHELL, pid, why, tree=True)] if why else []

    def _check_ptrace(self, b: Behaviour, target: int, tracer: int) -> list[Hit]:
        exe = read_exe(target)
        protected = rules.ptrace_target(b, exe, target == self.own_pid)
        if protected is None or tracer == self.own_pid:
            return []
        details = {"target_pid": target, "target_image": exe}
        return [Hit(PTRACE, tracer, f"attach to {protected} (pid {target})", details=details)]

    def _tracer(self, b: Behaviour, node: Node) -> list[Hit]:
        tracer = tracer_of(node.pid)
        return self._check_ptrace(b, node.pid, tracer) if tracer else []

    def _protected(self, matches: Any) -> list[Node]:
        nodes = [n for n in self.tree.snapshot() if n.pid == self.own_pid or matches(n.exe)]
        return nodes[:SCAN_MAX_PROCESSES]

    # --- periodic scans ------------------------------------------------------------------------
    def scan(self) -> None:
        """Shells' stdio (a shell that redirected itself), W+X memory, /etc/ld.so.preload."""
        self.counts["scans"] += 1
        b = self.policy.behaviour
        if b.reverse_shell.active:
            self._sweep_shells(b)
        if b.wx_memory.active:
            for node in self._protected(b.wx_protects):
                regions = rules.wx_regions(probes.wx_lines(node.pid))
                if regions:
                    hit = Hit(WX_MEMORY, node.pid, f"{len(regions)} W+X anonymous region(s)")
                    hit.details["regions"] = regions[:16]
                    self.act(hit)
        if b.ld_preload.active:
            self._check_ld_so_preload(b)

    def _sweep_shells(self, b: Behaviour) -> None:
        shells = [n for n in self.tree.snapshot() if n.exe and b.is_shell(n.exe)]
        for node in shells[:SCAN_MAX_PROCESSES]:
            for hit in self._check_shell(b, node.pid, node.exe):
                self.act(hit)

    def _check_ld_so_preload(self, b: Behaviour) -> None:
        try:
            st = os.stat(self.ld_so_preload)
            with open(self.ld_so_preload) as handle:
                text = handle.read(65536)
        except OSError:
            self._preload_seen = None
            return
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if seen == self._preload_seen:
            return
        self._preload_seen = seen
        entries = [e for line in text.splitlines() for e in line.split("#")[0].split()]
        bad = rules.untrusted_preloads(b, entries)
        if bad:
            self.act(Hit(LD_PRELOAD, 0, f"{self.ld_so_preload}: {' '.join(bad)}"))

    # --- acting --------------------------------------------------------------------------------
    def act(self, hit: Hit) -> Detection | None:
        """Collect forensics, stop the process in prevention mode, record the event."""
        policy = self.policy
        config = policy.behaviour.config(hit.module)
        key = (hit.module, hit.pid, hit.rule)
        if not config.active or key in self._reported:
            return None
        if len(self._reported) >= REPORTED_MAX:
            del self._reported[next(iter(self._reported))]
        self._reported[key] = None
        pid = hit.pid
        path = read_exe(pid) if pid else self.ld_so_preload
        info = read_proc(pid) if pid else None
        snapshot = self.forensics.snapshot(pid) if self.forensics and pid else None
        exe_fd = _open_exe(pid) if pid else -1
        try:
            digest = self._digest(exe_fd)
            if hit.module == FILELESS and self._malware_owns(policy, digest):
                return None  # the malware module reports (and kills) a blocked hash itself
            action: EventAction = EventAction.NOTIFIED
            error = ""
            if config.mode == Mode.PREVENTION and pid:
                action, error = self._kill(pid, hit.tree)
        finally:
            if exe_fd >= 0:
                os.close(exe_fd)
        details: dict[str, Any] = {
            "mechanism": self.source.mechanism if self.source else "none",
            "policy_version": policy.version,
            "rule": hit.rule,
            **hit.details,
        }
        if error:
            details["kill_error"] = error
        detection = Detection(
            action=action,
            process_path=path or "?",
            sha256=None if digest is None else digest.hex(),
            pid=pid or None,
            module=hit.module,
            severity=SEVERITY[hit.module],
            ppid=info.ppid if info else None,
            parent_path=info.parent_path if info else None,
            uid=info.uid if info else None,
            cmdline=info.cmdline if info else "",
            details=details,
        )
        if self.forensics is not None and self.forensics.enabled:
            details["forensics_id"] = detection.id
            self.forensics.submit(detection.id, snapshot, dict(build_event(detection)))
        self.counts["killed" if action == EventAction.KILLED else "notified"] += 1
        self.emit(detection)
        return detection

    def _malware_owns(self, policy: Policy, digest: bytes | None) -> bool:
        """Whether the malware module's kill sensor reports this image (blocked hash).

        Gone before it could be hashed (``digest`` None): the kill sensor, which judges the
        same exec, is the likely killer; it reports a blocked hash, so this is not repeated.
        """
        if not policy.malware.active or not policy.blocked or not self.malware_kills():
            return False
        if digest is None:
            return True
        return digest in policy.blocked and digest not in policy.allowed

    def _digest(self, fd: int) -> bytes | None:
        if fd < 0:
            return None
        try:
            if os.fstat(fd).st_size > self.settings.hash_max_bytes:
                return None
            if self._hasher is None:
                self._hasher = Hasher()
            return self._hasher.sha256_fd(fd)
        except OSError:
            return None

    def _kill(self, pid: int, tree: bool) -> tuple[EventAction, str]:
        """SIGKILL through pidfds (a recycled pid is never hit): the process, then its tree:
        the descendants the process tree holds and those /proc shows now (forks read late,
        during a storm or waiting for the next exec, are not in the tree yet)."""
        if pid in (0, 1, self.own_pid):
            return EventAction.NOTIFIED, "refused: not killing pid 1 or trapsd"
        pids = [pid]
        if tree:
            known = self.tree.descendants(pid)
            seen = set(known)
            pids += known + [p for p in probes.descendants(pid) if p not in seen]
            pids = [p for p in pids if p != self.own_pid]
        return kill_all(pids)

    # --- reporting -----------------------------------------------------------------------------
    def module_states(self) -> list[ModuleState]:
        return module_states(self)

    def stats(self) -> dict[str, int]:
        source = self.source.counts if self.source else {}
        return {**self.counts, **source, "tree_nodes": len(self.tree)}


def _open_exe(pid: int) -> int:
    try:
        return os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1

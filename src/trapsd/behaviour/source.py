"""Where the process tree's events come from: the proc connector, or /proc polling.

The connector thread only applies events to the tree and queues work for the behaviour
thread (it never kills, hashes or writes): it must keep up with the kernel's multicast.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import queue
import select
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

import psutil

from trapsd.behaviour.proctree import (
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONE,
    PROC_EVENT_PTRACE,
    PROC_EVENT_UID,
    ProcEvent,
    ProcTree,
    parse_events,
)
from trapsd.sensors.base import SensorUnavailable
from trapsd.sensors.proc_connector import open_connector
from trapsd.wakeup import WakePipe

log = logging.getLogger(__name__)
# As in trapsd.sensors.proc_connector (not imported: it pulls in the whole kill sensor).
NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
RCVBUF = 4 * 1024 * 1024
_NLMSG = struct.Struct("=IHHII")
_CNMSG = struct.Struct("=IIIIHH")


def _subscribe_message(op_code: int = PROC_CN_MCAST_LISTEN) -> bytes:
    op = struct.pack("=I", op_code)
    cn = _CNMSG.pack(CN_IDX_PROC, 1, 0, 0, len(op), 0) + op
    return _NLMSG.pack(_NLMSG.size + len(cn), 3, 0, 0, 0) + cn  # NLMSG_DONE


Work = tuple[Any, ...]
Wants = Callable[[str], bool]
"""Whether a kind of work ("exec", "uid", "ptrace", "shell") is wanted by an active module."""


class Source:
    """Feeds ``tree`` and puts work on ``work``; subclasses pick the mechanism."""

    mechanism = "none"
    healthy = False

    def __init__(self, tree: ProcTree, work: queue.Queue[Work], wants: Wants) -> None:
        self.tree = tree
        self.work = work
        self.wants = wants
        self.is_shell: Callable[[str], bool] = lambda exe: True  # the engine sets the real one
        self.counts = {"events": 0, "resyncs": 0, "lost": 0, "work_dropped": 0}
        self.crashed = ""
        self._stopping = threading.Event()
        self._wake = WakePipe()
        self._thread = threading.Thread(target=self._main, name="proctree", daemon=True)

    def start(self) -> None:
        self.tree.resync()
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.wake()
        if self._thread.is_alive():
            self._thread.join(5)
        if not self._thread.is_alive():
            self._wake.close()

    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:
            self.crashed = f"{type(exc).__name__}: {exc}"
            log.exception("process tree source stopped")

    def _run(self) -> None:
        raise NotImplementedError

    def put(self, item: Work) -> None:
        try:
            self.work.put_nowait(item)
        except queue.Full:
            self.counts["work_dropped"] += 1

    def _exec(self, pid: int) -> None:
        before, node = self.tree.exec(pid)
        if node is not None and self.wants("exec"):
            self.put(("exec", pid, before, dataclasses.replace(node)))  # as it was now


class ConnectorSource(Source):
    mechanism = "proc-connector"
    healthy = True

    def __init__(self, tree: ProcTree, work: queue.Queue[Work], wants: Wants) -> None:
        super().__init__(tree, work, wants)
        self._sock, self._pending = open_connector(_subscribe_message(), self._check_ack)

    @staticmethod
    def _check_ack(sock: socket.socket) -> list[ProcEvent]:
        """Wait (up to 1 s) for the kernel's ack; a non-zero error means refused.

        Returns the events that arrived with it (applied once the thread runs).
        """
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        early: list[ProcEvent] = []
        for _ in range(10):
            if not poller.poll(100):
                continue
            for event in parse_events(sock.recv(65536)):
                if event.what != PROC_EVENT_NONE:
                    early.append(event)
                elif event.other:
                    raise SensorUnavailable(
                        f"proc connector refused ({errno.errorcode.get(event.other)})"
                    )
                else:
                    return early
        return early  # older kernels may not ack

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        for event in self._pending:
            self._apply(event.what, event.pid, event)
        try:
            while not self._stopping.is_set():
                ready = poller.poll()  # no timeout: stop() writes the wake pipe
                if all(fd == self._wake.fileno() for fd, _ in ready):
                    continue
                self._drain()
        finally:
            try:
                self._sock.send(_subscribe_message(PROC_CN_MCAST_IGNORE))
            except OSError:
                pass
            self._sock.close()

    def _drain(self) -> None:
        """Every message queued now (one poll() per burst, not one per event)."""
        while not self._stopping.is_set():
            try:
                data = self._sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.counts["lost"] += 1
                self._resync()
                continue
            for event in parse_events(data):
                self.counts["events"] += 1
                self._apply(event.what, event.pid, event)

    def _resync(self) -> None:
        self.tree.resync()
        self.counts["resyncs"] += 1
        if self.wants("shell"):
            self.put(("sweep",))  # what ran during the gap is judged from the new tree

    def _apply(self, what: int, pid: int, event: ProcEvent) -> None:
        if event.thread:
            return
        if what == PROC_EVENT_FORK:
            child = self.tree.fork(pid, event.other)  # it runs its parent's image
            if child is None:
                self._resync()
            elif self.wants("shell") and self.is_shell(child.exe):
                self.put(("shell", event.other))  # a shell forks for each command it runs
        elif what == PROC_EVENT_EXEC:
            self._exec(pid)
        elif what == PROC_EVENT_EXIT:
            self.tree.exit(pid)
        elif what == PROC_EVENT_UID:
            before, node = self.tree.set_uid(event)
            if node is not None and self.wants("uid"):
                self.put(("uid", pid, before, dataclasses.replace(node)))
        elif what == PROC_EVENT_PTRACE and event.other and self.wants("ptrace"):
            self.put(("ptrace", pid, event.other))


class PollSource(Source):
    """Degraded: new pids every ``interval`` (short processes are missed, no uid changes)."""

    mechanism = "psutil-poll"

    def __init__(
        self, tree: ProcTree, work: queue.Queue[Work], wants: Wants, interval: float, why: str
    ) -> None:
        super().__init__(tree, work, wants)
        self.interval = interval
        self.why = why

    def _run(self) -> None:
        known = set(self.tree.nodes)
        while not self._stopping.wait(self.interval):
            now = set(psutil.pids())
            for pid in sorted(now - known):
                self.counts["events"] += 1
                parent = psutil_ppid(pid)
                if parent is not None:
                    self.tree.fork(pid, parent)
                    self._exec(pid)
            for pid in known - now:
                self.tree.exit(pid)
            known = now
            if self.wants("ptrace"):
                self.put(("tracers",))


def psutil_ppid(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).ppid())
    except psutil.Error:
        return None


def tracer_of(pid: int) -> int:
    """TracerPid from /proc/PID/status (0: not traced)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"TracerPid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0

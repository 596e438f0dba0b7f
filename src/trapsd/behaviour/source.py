"""Where the process tree's events come from: the proc connector, or /proc polling.

The connector thread applies events to the tree and judges each exec as it reads it (the
engine's checks only read /proc); it never kills, hashes or writes: hits and slower work go
to the behaviour thread. It must keep up with the kernel's multicast.
"""

from __future__ import annotations

import collections
import errno
import logging
import operator
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil

from trapsd.behaviour.pacing import Pacing
from trapsd.behaviour.proctree import Node, ProcTree
from trapsd.behaviour.rules import Creds
from trapsd.sensors.base import SensorUnavailable
from trapsd.sensors.cn_proc import (
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONE,
    PROC_EVENT_PTRACE,
    PROC_EVENT_UID,
    Message,
    open_connector,
    parse_events,
    unsubscribe,
)
from trapsd.wakeup import WakePipe

log = logging.getLogger(__name__)
PROMPT = PROC_EVENT_EXEC | PROC_EVENT_UID | PROC_EVENT_PTRACE
LATER = PROC_EVENT_FORK | PROC_EVENT_EXIT
EVENTS = PROMPT | LATER
"""What the tree follows (never COMM, GID, SID, COREDUMP: each exec sends a COMM)."""
BATCH_MAX = 64
"""Datagrams read from a socket before the batch is applied and the behaviour thread woken."""
TIMESTAMP = operator.itemgetter(2)

Work = tuple[Any, ...]
Wants = Callable[[str], bool]
"""Whether a kind of work ("exec", "uid", "ptrace", "shell") is wanted by an active module."""
OnExec = Callable[[int, Creds | None, Node], list[Work]]
"""The work an exec makes (pid, credentials before it, its node)."""


class WorkQueue:
    """Work for the behaviour thread, bounded; one wake-up per batch of it, not per item."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: collections.deque[Work] = collections.deque()
        self._ready = threading.Event()
        self._added = False

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Work) -> bool:
        """Queue ``item`` (no wake-up: :meth:`wake` once the batch is in); False when full."""
        if len(self._items) >= self.limit:
            return False
        self._items.append(item)
        self._added = True
        return True

    def wake(self, always: bool = False) -> None:
        """Wake the reader if work was added since the last wake-up (or ``always``)."""
        if (self._added or always) and not self._ready.is_set():
            self._added = False
            self._ready.set()

    def take(self, timeout: float) -> Iterator[Work]:
        """What is queued once woken (or after ``timeout`` s: possibly nothing)."""
        self._ready.wait(timeout)
        self._ready.clear()  # before taking: an item added after the last take wakes again
        items = self._items
        while items:
            yield items.popleft()


class Source:
    """Feeds ``tree`` and puts work on ``work``; subclasses pick the mechanism."""

    mechanism = "none"
    healthy = False
    kernel_filter = "none"

    def __init__(self, tree: ProcTree, work: WorkQueue, wants: Wants) -> None:
        self.tree = tree
        self.work = work
        self.wants = wants
        self.is_shell: Callable[[str], bool] = lambda exe: True  # the engine sets the real one
        self.on_exec: OnExec = lambda pid, before, node: [("exec", pid, before, node)]
        """The work an exec makes, decided on this thread (the engine judges it here)."""
        self.counts = {"events": 0, "resyncs": 0, "lost": 0, "work_dropped": 0, "exec_gone": 0}
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
        """Queue work; the reader is woken by :meth:`WorkQueue.wake` after the batch."""
        if not self.work.add(item):
            self.counts["work_dropped"] += 1

    def _exec(self, pid: int) -> None:
        before, node = self.tree.exec(pid)
        if node is None:
            self.counts["exec_gone"] += 1  # exited before its image could be read
        elif self.wants("exec"):
            for item in self.on_exec(pid, before, node):  # the node is frozen: as it was now
                self.put(item)


class ConnectorSource(Source):
    """Two proc-connector sockets, so that a process costs the agent one wake-up, not three.

    Execs, uid changes and traces (PROMPT) wake the thread at once: what they name is read
    from /proc while the process still lives. Forks and exits (LATER) only update the map:
    they may wait for the next prompt event. During an exec storm nothing wakes the thread:
    it reads every ``storm_period_s`` (0: never). :mod:`trapsd.behaviour.pacing` decides.
    Both sockets are read together and applied in the kernel's timestamp order. A kernel
    that filters neither by event type nor by socket filter would send every event to both:
    then one socket takes them all.
    """

    mechanism = "proc-connector"
    healthy = True

    def __init__(
        self, tree: ProcTree, work: WorkQueue, wants: Wants, storm_period_s: float = 0.0
    ) -> None:
        super().__init__(tree, work, wants)
        self.storm_period_s = storm_period_s
        self.counts["storms"] = 0
        self._prompt, early, self.kernel_filter = open_connector(PROMPT, self._check_ack)
        self._later: socket.socket | None = None
        if self.kernel_filter == "none":
            unsubscribe(self._prompt)
            self._prompt, early, self.kernel_filter = open_connector(EVENTS, self._check_ack)
        else:
            try:
                self._later, later_early, _ = open_connector(LATER, self._check_ack)
            except SensorUnavailable:
                unsubscribe(self._prompt)
                raise
            early = sorted(early + later_early, key=TIMESTAMP)
        self._pending = early
        self._buffer = bytearray(65536)

    @staticmethod
    def _check_ack(sock: socket.socket) -> list[Message]:
        """Wait (up to 1 s) for the kernel's ack; a non-zero error means refused.

        Returns the events that arrived with it (applied once the thread runs).
        """
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        early: list[Message] = []
        for _ in range(10):
            if not poller.poll(100):
                continue
            for message in parse_events(sock.recv(65536)):
                if message[1] != PROC_EVENT_NONE:
                    early.append(message)
                elif message[3]:
                    raise SensorUnavailable(
                        f"proc connector refused ({errno.errorcode.get(message[3])})"
                    )
                else:
                    return early
        return early  # older kernels may not ack

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake, select.POLLIN)
        for _, what, _, a, b, c, d in self._pending:
            self._apply(what, a, b, c, d)
        self.work.wake()
        pacing = Pacing(poller, self._prompt, self._later, self.storm_period_s)
        try:
            while not self._stopping.is_set():
                timeout = pacing.timeout
                ready = poller.poll(None if timeout is None else timeout * 1000)
                if ready and all(fd == self._wake.fileno() for fd, _ in ready):
                    continue
                had_later, prompts = self._drain()
                pacing.after({fd for fd, _ in ready}, had_later, prompts)
                self.counts["storms"] = pacing.storms
        finally:
            unsubscribe(self._prompt)
            if self._later is not None:
                unsubscribe(self._later)

    def _read(self, sock: socket.socket) -> tuple[list[Message], bool]:
        """What ``sock`` holds now, up to ``BATCH_MAX`` datagrams, and whether that was all
        (an empty read) rather than the limit; a loss (ENOBUFS) resyncs."""
        out: list[Message] = []
        recv_into, buffer = sock.recv_into, self._buffer
        for _ in range(BATCH_MAX):
            try:
                size = recv_into(buffer, 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return out, True
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.counts["lost"] += 1
                self._resync()
                continue
            out += parse_events(buffer, size)
        return out, False

    def _drain(self) -> tuple[bool, int]:
        """What is queued now, in batches; the behaviour thread is woken once per batch.
        What comes in meanwhile waits for the next poll(), which returns at once: no read to
        find the sockets empty again. Whether the later socket had anything, and how many
        prompt events were read."""
        had_later, prompts = False, 0
        held: list[Message] = []  # prompt events newer than the last read of the later socket
        try:
            while not self._stopping.is_set():
                read_at = time.monotonic_ns()  # the kernel's clock for the timestamps
                later, later_all = (
                    self._read(self._later) if self._later is not None else ([], True)
                )
                prompt, prompt_all = self._read(self._prompt)
                prompts += len(prompt)
                prompt = held + prompt
                had_later = had_later or bool(later)
                batch = prompt
                if self._later is not None:  # a fork or exit after read_at goes before held
                    held = [m for m in prompt if m[2] >= read_at]
                    batch = sorted(later + [m for m in prompt if m[2] < read_at], key=TIMESTAMP)
                for _, what, _, a, b, c, d in batch:
                    self.counts["events"] += 1
                    self._apply(what, a, b, c, d)
                self.work.wake()
                if later_all and prompt_all and not held:
                    break
        finally:
            self.work.wake()
        return had_later, prompts

    def _resync(self) -> None:
        self.tree.resync()
        self.counts["resyncs"] += 1
        if self.wants("shell"):
            self.put(("sweep",))  # what ran during the gap is judged from the new tree

    def _apply(self, what: int, a: int, b: int, c: int, d: int) -> None:
        """One event; its data words ``a`` to ``d`` (see cn_proc.MESSAGE). Threads' forks and
        exits are skipped here too, for kernels that refused the socket filter."""
        if what == PROC_EVENT_FORK:
            if c != d:
                return  # a thread
            child = self.tree.fork(d, b)  # it runs its parent's image
            if child is None:
                self._resync()
            elif self.wants("shell") and self.is_shell(child.exe):
                self.put(("shell", b))  # a shell forks for each command it runs
        elif what == PROC_EVENT_EXEC:
            self._exec(b)
        elif what == PROC_EVENT_EXIT:
            if a == b:  # the group leader (other threads may live on: see ProcTree.exit)
                self.tree.exit(b)
        elif what == PROC_EVENT_UID:
            before, node = self.tree.set_uid(b, c, d)
            if node is not None and self.wants("uid"):
                self.put(("uid", b, before, node))
        elif what == PROC_EVENT_PTRACE and d and self.wants("ptrace"):
            self.put(("ptrace", b, d))


class PollSource(Source):
    """Degraded: new pids every ``interval`` (short processes are missed, no uid changes)."""

    mechanism = "psutil-poll"

    def __init__(
        self, tree: ProcTree, work: WorkQueue, wants: Wants, interval: float, why: str
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
            self.work.wake()


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

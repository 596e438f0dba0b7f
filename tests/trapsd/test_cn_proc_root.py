"""The proc connector's kernel-side filters against the real kernel (netlink only: no fanotify
in this process). A child process renames itself, starts threads, forks and execs; what
reaches the socket is compared with and without each filter. (An exec sends no COMM event:
only a rename does.)"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from agent_helpers import ROOT_ONLY

from trapsd.behaviour.source import EVENTS
from trapsd.sensors import cn_proc
from trapsd.sensors.cn_proc import (
    PROC_EVENT_COMM,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    Message,
    parse_events,
)

pytestmark = [ROOT_ONLY, pytest.mark.root, pytest.mark.timeout(60, method="thread")]

CHILD = """
import ctypes, os, threading, time
ctypes.CDLL(None).prctl(15, b"traps-renamed", 0, 0, 0)  # PR_SET_NAME: a COMM event
threads = [threading.Thread(target=time.sleep, args=(0.05,)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
os.execv("/bin/true", ["true"])
"""
TYPES_FILTERED = cn_proc.event_types_filtered()


def connector(by_type: bool, bpf: bool) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, cn_proc.NETLINK_CONNECTOR)
    sock.setsockopt(socket.SOL_SOCKET, cn_proc.SO_RCVBUFFORCE, cn_proc.RCVBUF)
    if bpf:
        assert cn_proc.attach_filter(sock, cn_proc.socket_filter(EVENTS))
    sock.bind((0, cn_proc.CN_IDX_PROC))
    sock.send(cn_proc.subscribe_message(cn_proc.PROC_CN_MCAST_LISTEN, EVENTS if by_type else None))
    return sock


def messages(sock: socket.socket, seconds: float) -> Iterator[Message]:
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if poller.poll(100):
            yield from parse_events(sock.recv(65536))


def child_events(sock: socket.socket) -> list[Message]:
    """The events of a child that threads, forks and execs, up to its exit."""
    child = subprocess.Popen([sys.executable, "-c", CHILD])
    assert child.wait(20) == 0
    ours, seen = {child.pid}, []
    for message in messages(sock, 10):
        _, what, _, a, b, _, d = message
        if what == PROC_EVENT_FORK and b in ours:
            ours.add(d)
        if b in ours or (what == PROC_EVENT_FORK and d in ours):
            seen.append(message)
        if what == PROC_EVENT_EXIT and a == b == child.pid:
            return seen
    raise AssertionError(f"no exit of the child in 10 s: {seen}")


def kinds(seen: list[Message]) -> set[str]:
    out = set()
    for _, what, _, a, b, c, d in seen:
        if what == PROC_EVENT_FORK:
            out.add("process fork" if c == d else "thread fork")
        elif what == PROC_EVENT_EXIT:
            out.add("process exit" if a == b else "thread exit")
        elif what == PROC_EVENT_EXEC:
            out.add("exec")
        elif what == PROC_EVENT_COMM:
            out.add("comm")
    return out


PROCESSES = {"process fork", "exec", "process exit"}


@pytest.mark.parametrize(
    ("by_type", "bpf", "expected"),
    [
        (False, False, PROCESSES | {"thread fork", "thread exit", "comm"}),  # the control
        (False, True, PROCESSES),
        pytest.param(
            True,
            False,
            PROCESSES | {"thread fork", "thread exit"},
            marks=pytest.mark.skipif(not TYPES_FILTERED, reason="Linux < 6.6"),
        ),
        (TYPES_FILTERED, True, PROCESSES),  # what the agent does
    ],
)
def test_kernel_filters_drop_comm_and_thread_events(
    by_type: bool, bpf: bool, expected: set[str]
) -> None:
    sock = connector(by_type, bpf)
    try:
        seen = child_events(sock)
    finally:
        cn_proc.unsubscribe(sock)
    assert kinds(seen) == expected
    forks = [m for m in seen if m[1] == PROC_EVENT_FORK and m[5] == m[6]]
    assert len(forks) == 2  # the child, its child
    assert len([m for m in seen if m[1] == PROC_EVENT_EXEC]) == 2  # python, then true


def test_the_agent_socket_says_how_the_kernel_filters() -> None:
    sock, _, how = cn_proc.open_connector(EVENTS, lambda sock: None)
    cn_proc.unsubscribe(sock)
    assert how == ("event types+bpf" if TYPES_FILTERED else "bpf")


def test_forks_and_exits_read_later_are_applied_in_the_kernels_order() -> None:
    """The tree's source reads execs at once and forks and exits with them or ~0.5 s later:
    the fork of a shell's child is still applied before the child's exec (the exec finds the
    node the fork made, with its parent's credentials), and its exit is applied without any
    further exec."""
    from trapsd.behaviour.proctree import Node, ProcTree
    from trapsd.behaviour.rules import Creds
    from trapsd.behaviour.source import ConnectorSource, WorkQueue

    tree, work = ProcTree(), WorkQueue(10_000)
    source = ConnectorSource(tree, work, lambda kind: kind == "exec")
    source.start()
    try:
        shell = subprocess.Popen(
            ["/bin/sh", "-c", "/bin/sleep 1 & echo $!; wait"], stdout=subprocess.PIPE, text=True
        )
        assert shell.stdout is not None
        sleeper = int(shell.stdout.readline())
        deadline = time.monotonic() + 10
        execs: dict[int, tuple[Creds | None, Node]] = {}
        while sleeper not in execs and time.monotonic() < deadline:
            execs.update({i[1]: (i[2], i[3]) for i in work.take(0.2) if i[0] == "exec"})
        before, node = execs[sleeper]
        assert before is not None  # the fork's node, made before the exec was applied
        assert node.exe == "/usr/bin/sleep" and node.ppid == shell.pid
        assert shell.wait(10) == 0
        deadline = time.monotonic() + 5
        while (sleeper in tree.nodes or shell.pid in tree.nodes) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleeper not in tree.nodes and shell.pid not in tree.nodes
        assert source.kernel_filter in ("event types+bpf", "bpf")
    finally:
        source.stop()


def test_a_stream_of_forks_without_exec_wakes_the_tree_a_few_times_not_per_event() -> None:
    """A server's workers (fork, exit, no exec): from the third wake-up within 0.5 s the
    forks and exits wait and are read in batches; the tree still loses none of them."""
    from trapsd.behaviour.proctree import ProcTree
    from trapsd.behaviour.source import ConnectorSource, WorkQueue

    def wakeups(tid: int) -> int:
        with open(f"/proc/self/task/{tid}/status") as status:
            line = next(line for line in status if line.startswith("voluntary_ctxt_switches"))
        return int(line.split()[1])

    source = ConnectorSource(ProcTree(), WorkQueue(10_000), lambda kind: kind == "exec")
    source.start()
    try:
        time.sleep(0.3)
        tid = source._thread.native_id
        assert tid is not None
        before, events = wakeups(tid), source.counts["events"]
        children = []
        for _ in range(100):
            child = subprocess.Popen(["/bin/sleep", "0"])  # fork and exec: prompt
            children.append(child)
        for child in children:
            child.wait()
        deadline = time.monotonic() + 5
        while any(c.pid in source.tree.nodes for c in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(c.pid in source.tree.nodes for c in children)
        forks = os_forks(100)
        while any(pid in source.tree.nodes for pid in forks) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(pid in source.tree.nodes for pid in forks)
        read = source.counts["events"] - events
        assert read >= 400  # of 100 spawns (fork, exec, exit), 100 forks (fork, exit)
        assert wakeups(tid) - before < read / 3
    finally:
        source.stop()


def os_forks(count: int) -> list[int]:
    """``count`` children that exit at once without exec'ing, 10 ms apart."""
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        pids.append(pid)
        time.sleep(0.01)
    return pids


def test_an_exec_storm_is_read_on_a_timer_and_longer_processes_are_still_judged() -> None:
    """Back-to-back spawns of /bin/true: the tree stops being woken by each exec (from within
    the exec) and reads every millisecond (its own timer); a process that lives longer than
    that meanwhile is still judged, and the tree keeps none of the exited ones. (That the
    sockets cannot wake the thread during a storm: tests/trapsd/test_pacing.py. Its context
    switches here count GIL hand-overs with this thread too, so they prove nothing.)"""
    from trapsd.behaviour.proctree import ProcTree
    from trapsd.behaviour.source import ConnectorSource, WorkQueue

    work = WorkQueue(100_000)
    source = ConnectorSource(ProcTree(), work, lambda kind: kind == "exec", 0.001)
    source.start()
    try:
        time.sleep(0.3)
        spawned = []
        for n in range(1000):
            if n == 500:
                sleeper = subprocess.Popen(["/bin/sleep", "0.2"])
            pid = os.posix_spawn("/bin/true", ["/bin/true"], {})
            os.waitpid(pid, 0)
            spawned.append(pid)
        assert sleeper.wait(10) == 0
        judged: set[int] = set()
        deadline = time.monotonic() + 5
        while sleeper.pid not in judged and time.monotonic() < deadline:
            judged.update(item[1] for item in work.take(0.1) if item[0] == "exec")
        assert sleeper.pid in judged
        assert source.counts["storms"] >= 1
        while any(p in source.tree.nodes for p in spawned) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(p in source.tree.nodes for p in spawned)
    finally:
        source.stop()

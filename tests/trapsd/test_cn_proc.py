"""The proc connector's subscription and socket filter, and the process tree's bookkeeping of
thread-group leaders, without the kernel (see test_cn_proc_root.py for the real thing)."""

from __future__ import annotations

import struct
import time

import pytest

from trapsd.behaviour import proctree
from trapsd.behaviour.proctree import ProcTree
from trapsd.behaviour.rules import Creds
from trapsd.behaviour.source import EVENTS, WorkQueue
from trapsd.sensors import cn_proc
from trapsd.sensors.cn_proc import (
    PROC_EVENT_COMM,
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_FORK,
    PROC_EVENT_NONE,
    PROC_EVENT_PTRACE,
    PROC_EVENT_UID,
)

PROC_EVENT_GID = 0x40
PROC_EVENT_SID = 0x80


def test_the_subscription_is_the_four_byte_op_or_the_eight_byte_proc_input() -> None:
    old = cn_proc.subscribe_message(cn_proc.PROC_CN_MCAST_LISTEN)
    new = cn_proc.subscribe_message(cn_proc.PROC_CN_MCAST_LISTEN, EVENTS)
    # nlmsghdr (len, NLMSG_DONE), cn_msg (idx, val, seq, ack, len, flags), then the payload
    assert old == struct.pack("=IHHII", 40, 3, 0, 0, 0) + struct.pack(
        "=IIIIHHI", 1, 1, 0, 0, 4, 0, 1
    )
    assert new == struct.pack("=IHHII", 44, 3, 0, 0, 0) + struct.pack(
        "=IIIIHHII", 1, 1, 0, 0, 8, 0, 1, 0x80000107
    )
    assert cn_proc.subscribe_message(cn_proc.PROC_CN_MCAST_IGNORE)[-4:] == struct.pack("=I", 2)


@pytest.mark.parametrize(
    ("release", "filtered"),
    [
        ("6.18.44-fc-v669", True),
        ("6.6.0", True),
        ("6.10.3-arch1", True),
        ("7.0.1", True),
        ("6.5.13-200.fc38.x86_64", False),
        ("5.15.0-91-generic", False),
        ("4.19", False),
        ("weird", False),
    ],
)
def test_event_types_are_asked_for_from_linux_6_6_on(release: str, filtered: bool) -> None:
    assert cn_proc.event_types_filtered(release) is filtered


def run_bpf(program: bytes, packet: bytes) -> int:
    """A classic BPF interpreter for the instructions the socket filter uses."""
    insns = [struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), 8)]
    a = x = pc = 0
    memory = [0] * 16
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == 0x20:  # ld [k], big-endian word
            if k + 4 > len(packet):
                return 0
            a = int.from_bytes(packet[k : k + 4], "big")
        elif code == 0x02:
            memory[k] = a
        elif code == 0x61:
            x = memory[k]
        elif code in (0x15, 0x1D):
            pc += jt if a == (k if code == 0x15 else x) else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected BPF instruction {code:#x}")


def message(what: int, *words: int) -> bytes:
    body = struct.pack("=IIQ", what, 1, 123) + struct.pack(f"={len(words)}I", *words).ljust(24)
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(body), 0) + body
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


CASES = {
    "ack": message(PROC_EVENT_NONE, 0),
    "process fork": message(PROC_EVENT_FORK, 10, 10, 11, 11),
    "process fork from a thread": message(PROC_EVENT_FORK, 12, 10, 13, 13),
    "thread fork": message(PROC_EVENT_FORK, 10, 10, 14, 10),
    "exec": message(PROC_EVENT_EXEC, 11, 11),
    "comm": message(PROC_EVENT_COMM, 11, 11, 0x65757274),
    "leader exit": message(PROC_EVENT_EXIT, 11, 11, 0, 17),
    "thread exit": message(PROC_EVENT_EXIT, 14, 10, 0, 0),
    "uid": message(PROC_EVENT_UID, 11, 11, 0, 0),
    "uid of a thread": message(PROC_EVENT_UID, 14, 10, 0, 0),
    "ptrace": message(PROC_EVENT_PTRACE, 11, 11, 20, 20),
    "gid": message(PROC_EVENT_GID, 11, 11, 0, 0),
    "sid": message(PROC_EVENT_SID, 11, 11),
    "truncated": message(PROC_EVENT_EXEC, 11, 11)[:30],  # no event type
}


def passed(events: int) -> set[str]:
    program = cn_proc.socket_filter(events)
    return {name for name, packet in CASES.items() if run_bpf(program, packet)}


def test_the_socket_filter_passes_processes_events_and_drops_threads_and_the_rest() -> None:
    assert passed(EVENTS) == {
        "ack",
        "process fork",
        "process fork from a thread",
        "exec",
        "leader exit",
        "uid",
        "uid of a thread",
        "ptrace",
    }
    assert passed(PROC_EVENT_EXEC) == {"ack", "exec"}  # the exec kill sensor's
    assert passed(PROC_EVENT_FORK | PROC_EVENT_EXIT) == {
        "ack",
        "process fork",
        "process fork from a thread",
        "leader exit",
    }


def test_a_leader_that_exits_before_its_threads_comes_back_with_their_events() -> None:
    tree = ProcTree()
    me = proctree.Node(4242, 1, "/usr/bin/app", Creds(1000, 1000, 1000))
    tree.nodes[me.pid] = me
    tree.exit(me.pid)  # the leader's own exit: other threads may live on
    assert tree.get(me.pid) is None
    before, node = tree.set_uid(me.pid, 1000, 0)  # a thread's setuid: the process lives
    assert before == me.creds and node is not None and node.creds.euid == 0
    assert tree.get(me.pid) == node
    tree.exit(me.pid)
    tree.fork(me.pid, 1)  # the pid recycled by a new process: the old node is gone for good
    assert me.pid not in tree.exited
    for pid in range(10_000, 10_000 + proctree.EXITED_MAX + 10):
        tree.nodes[pid] = proctree.Node(pid, 1, "/bin/x", Creds(0, 0, 0))
        tree.exit(pid)
    assert len(tree.exited) == proctree.EXITED_MAX


def took(work: WorkQueue, timeout: float) -> tuple[list[int], bool]:
    """(the items taken, whether the reader was woken rather than timed out)."""
    started = time.monotonic()
    items = [item[1] for item in work.take(timeout)]
    return items, time.monotonic() - started < timeout / 2


def test_work_is_handed_over_in_batches_with_one_wake_up() -> None:
    work = WorkQueue(3)
    assert [work.add(("exec", n)) for n in range(4)] == [True, True, True, False]
    assert took(work, 0.2) == ([0, 1, 2], False)  # adding alone wakes no one
    work.add(("exec", 3))
    work.add(("exec", 4))
    work.wake()
    assert took(work, 5) == ([3, 4], True)  # one wake-up for the batch
    work.wake()  # nothing added since the last wake-up
    assert took(work, 0.2) == ([], False)
    work.wake(always=True)  # as stop() does
    assert took(work, 5) == ([], True)

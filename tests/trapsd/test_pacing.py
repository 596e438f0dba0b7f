"""When the process tree's thread is woken: the pacing of its two proc-connector sockets,
driven here with socket pairs standing for them (the kernel's side: tests/trapsd/
test_cn_proc_root.py)."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from trapsd.behaviour.pacing import (
    LATER_FREQUENT,
    LATER_WAIT_S,
    STORM_LEAVE_S,
    STORM_WAKES,
    Pacing,
)


class Sockets:
    def __init__(self, period: float = 0.001) -> None:
        self.prompt, self.prompt_peer = socket.socketpair()
        self.later, self.later_peer = socket.socketpair()
        self.poller = select.poll()
        self.pacing = Pacing(self.poller, self.prompt, self.later, period)
        self.prompt_peer.send(b"x")  # both readable for good: poll() shows what is listened to
        self.later_peer.send(b"x")

    @property
    def listened(self) -> set[str]:
        names = {self.prompt.fileno(): "prompt", self.later.fileno(): "later"}
        return {names[fd] for fd, _ in self.poller.poll(0)}

    def close(self) -> None:
        for sock in (self.prompt, self.prompt_peer, self.later, self.later_peer):
            sock.close()

    def execs(self, count: int) -> None:
        for _ in range(count):
            self.pacing.after({self.prompt.fileno()}, False, 1)


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    made = Sockets()
    yield made
    made.close()


def test_a_quiet_host_is_woken_by_every_event(sockets: Sockets) -> None:
    assert sockets.listened == {"prompt", "later"} and sockets.pacing.timeout is None
    sockets.pacing.after({sockets.later.fileno()}, True, 0)  # a lone fork
    assert sockets.listened == {"prompt", "later"} and sockets.pacing.timeout is None


def test_after_an_exec_forks_and_exits_wait_until_a_quiet_wait(sockets: Sockets) -> None:
    sockets.execs(1)
    assert sockets.listened == {"prompt"} and sockets.pacing.timeout == LATER_WAIT_S
    sockets.pacing.after(set(), True, 0)  # the wait ended with forks and exits read: again
    assert sockets.listened == {"prompt"}
    sockets.pacing.after(set(), False, 0)  # a wait with nothing: listened to again
    assert sockets.listened == {"prompt", "later"} and sockets.pacing.timeout is None


def test_a_stream_of_forks_and_exits_waits(sockets: Sockets) -> None:
    for _ in range(LATER_FREQUENT - 1):
        sockets.pacing.after({sockets.later.fileno()}, True, 0)
    assert sockets.listened == {"prompt", "later"}
    sockets.pacing.after({sockets.later.fileno()}, True, 0)
    assert sockets.listened == {"prompt"} and sockets.pacing.timeout == LATER_WAIT_S


def test_an_exec_storm_is_read_on_a_timer_until_execs_stop(sockets: Sockets) -> None:
    sockets.execs(STORM_WAKES - 1)
    assert not sockets.pacing.in_storm and sockets.listened == {"prompt"}
    sockets.execs(1)
    assert sockets.pacing.in_storm and sockets.pacing.storms == 1
    assert sockets.listened == set() and sockets.pacing.timeout == 0.001
    sockets.pacing.after(set(), False, 3)  # a period with execs
    sockets.pacing.after(set(), False, 0)  # an empty one, too soon to leave
    assert sockets.pacing.in_storm and sockets.listened == set()
    time.sleep(STORM_LEAVE_S)
    sockets.pacing.after(set(), True, 0)
    assert not sockets.pacing.in_storm
    assert sockets.listened == {"prompt"} and sockets.pacing.timeout == LATER_WAIT_S
    sockets.pacing.after(set(), False, 0)
    assert sockets.listened == {"prompt", "later"} and sockets.pacing.timeout is None
    sockets.execs(STORM_WAKES)
    assert sockets.pacing.storms == 2


def test_execs_spread_out_never_make_a_storm(sockets: Sockets) -> None:
    for _ in range(STORM_WAKES):
        sockets.execs(1)
        time.sleep(0.005)  # 200 execs a second: below the storm's rate
    assert not sockets.pacing.in_storm


def test_no_storm_period_means_every_exec_wakes_the_thread() -> None:
    made = Sockets(period=0.0)
    try:
        made.execs(STORM_WAKES * 4)
        assert not made.pacing.in_storm and made.listened == {"prompt"}
    finally:
        made.close()


def test_one_socket_only_never_waits_for_forks() -> None:
    prompt, peer = socket.socketpair()
    try:
        poller = select.poll()
        pacing = Pacing(poller, prompt, None, 0.001)
        peer.send(b"x")
        pacing.after({prompt.fileno()}, False, 1)
        assert pacing.timeout is None and poller.poll(0)
        for _ in range(STORM_WAKES):
            pacing.after({prompt.fileno()}, False, 1)
        assert pacing.in_storm and not poller.poll(0)
        time.sleep(STORM_LEAVE_S)
        pacing.after(set(), False, 0)
        assert pacing.timeout is None and poller.poll(0)
    finally:
        prompt.close()
        peer.close()

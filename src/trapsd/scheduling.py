"""Which of the agent's threads may preempt the host's work when they wake.

Every process the host starts wakes the agent (the process tree, the behaviour checks). As
ordinary threads they preempt whatever runs on that CPU, often the very exec they follow;
SCHED_BATCH threads get the same share of CPU but never preempt on a wake-up (measured: a
spawn of /bin/true with the agent 1.17-1.20 -> 1.10-1.14 times the time without it). The
threads that answer fanotify stay ordinary: every exec on the host waits for them.

Threads inherit the policy of the thread that starts them: the daemon sets it for its main
thread before it starts any other (:func:`background`), the fanotify threads take it back
for themselves (:func:`foreground`).
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def _set(policy: str) -> None:
    try:  # 0: the calling thread; AttributeError: not Linux
        os.sched_setscheduler(0, getattr(os, policy), os.sched_param(0))
    except (OSError, AttributeError) as exc:
        log.debug("scheduling policy %s refused: %s", policy, exc)


def background() -> None:
    """Make the calling thread, and the threads it starts from now on, SCHED_BATCH."""
    _set("SCHED_BATCH")


def foreground() -> None:
    """Make the calling thread an ordinary (SCHED_OTHER) one again."""
    _set("SCHED_OTHER")

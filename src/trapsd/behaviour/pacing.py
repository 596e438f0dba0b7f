"""When the process tree's thread is woken by the proc connector, and when it reads on a timer.

Waking a thread is what following processes costs the host most: the kernel wakes the reader
from within the exec (or fork, or exit) it reports, and on a virtual machine waking an idle
vCPU is an interrupt sent through the hypervisor. Measured on a 2-vCPU KVM guest: a spawn of
/bin/true spends ~5 % of its time in that wake-up; every process event read as it comes made
it 1.11-1.17 times slower, exec events alone 1.03-1.04 times.

Three ways of listening, chosen from what came lately:

- *quiet host*: every event wakes the thread;
- *forks and exits wait* (once an exec came, or when they come in a stream: a server's
  workers): only execs, uid changes and traces wake it; forks and exits are read with them,
  or after ``LATER_WAIT_S``;
- *exec storm* (``STORM_WAKES`` execs within ``STORM_WINDOW_S``: shell loops, builds, a
  benchmark): nothing wakes it; it reads every ``storm_period_s``, like a network driver
  that stops taking an interrupt per packet under load, until ``STORM_LEAVE_S`` passed with
  no exec. The price: during a storm, a process that lives shorter than the period is gone
  before its image, environment and stdio are read (it is counted in ``exec_gone``).
"""

from __future__ import annotations

import select
import socket
import time

LATER_WAIT_S = 0.5
"""How long forks and exits may wait for a prompt event before they are read anyway."""
LATER_FREQUENT = 3
"""Wake-ups by forks and exits within LATER_WAIT_S from which they wait (a lone process: 2)."""
STORM_WAKES = 5
"""Wake-ups by execs within STORM_WINDOW_S from which the thread reads on a timer."""
STORM_WINDOW_S = 0.02
STORM_LEAVE_S = 0.01
"""Time without an exec after which execs wake the thread again."""


class Pacing:
    """Registers the sockets with ``poller`` as the way of listening requires; :attr:`timeout`
    is the poll timeout (s, None: none) and :meth:`after` is told what each wake-up found."""

    def __init__(
        self,
        poller: select.poll,
        prompt: socket.socket,
        later: socket.socket | None,
        storm_period_s: float,
    ) -> None:
        self.poller = poller
        self.prompt = prompt.fileno()
        self.later = later.fileno() if later is not None else None
        self.storm_period_s = storm_period_s
        self.timeout: float | None = None
        self.in_storm = False
        self.storms = 0
        self._later_listened = self.later is not None
        self._later_since, self._later_wakes = 0.0, 0
        self._execs_since, self._exec_wakes = 0.0, 0
        self._last_exec = 0.0
        poller.register(self.prompt, select.POLLIN)
        if self.later is not None:
            poller.register(self.later, select.POLLIN)

    def after(self, woke: set[int], had_later: bool, prompts: int) -> None:
        """A wake-up: the fds that woke the thread (none: the timeout), whether forks or exits
        were read, how many prompt events (execs, uid changes, traces) were."""
        now = time.monotonic()
        if self.in_storm:
            if prompts:
                self._last_exec = now
            elif now - self._last_exec >= STORM_LEAVE_S:
                self._leave_storm()
            return
        if self.prompt in woke and self.storm_period_s > 0 and self._storm_begins(now):
            return
        if self.later is not None:
            self._pace_later(self.later, woke, had_later, now)

    def _storm_begins(self, now: float) -> bool:
        if now - self._execs_since >= STORM_WINDOW_S:
            self._execs_since, self._exec_wakes = now, 0
        self._exec_wakes += 1
        if self._exec_wakes < STORM_WAKES:
            return False
        self.in_storm, self._last_exec, self.storms = True, now, self.storms + 1
        self.poller.unregister(self.prompt)
        if self._later_listened:
            self.poller.unregister(self.later)  # type: ignore[arg-type]
            self._later_listened = False
        self.timeout = self.storm_period_s
        return True

    def _leave_storm(self) -> None:
        """Execs wake the thread again; forks and exits wait, as after an exec."""
        self.in_storm = False
        self._execs_since, self._exec_wakes = 0.0, 0
        self.poller.register(self.prompt, select.POLLIN)
        self.timeout = LATER_WAIT_S if self.later is not None else None

    def _pace_later(self, later: int, woke: set[int], had_later: bool, now: float) -> None:
        """Forks and exits wait once an exec came, or when ``LATER_FREQUENT`` of them woke
        the thread within ``LATER_WAIT_S``, until such a wait passed with none; a lone fork
        and exit are read as they come."""
        if self._later_listened:
            frequent = False
            if later in woke:
                if now - self._later_since >= LATER_WAIT_S:
                    self._later_since, self._later_wakes = now, 0
                self._later_wakes += 1
                frequent = self._later_wakes >= LATER_FREQUENT
            if self.prompt in woke or frequent:
                self.poller.unregister(later)
                self._later_listened = False
                self.timeout = LATER_WAIT_S
        elif self.prompt not in woke and not had_later:
            self.poller.register(later, select.POLLIN)  # a quiet LATER_WAIT_S: listen again
            self._later_listened = True
            self.timeout = None

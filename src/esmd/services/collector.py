"""Python's cyclic garbage collector, kept out of a broadcast's way.

A process holding 10,000 long-polls tracks ~630,000 container objects (each held poll is a
connection, a task, its coroutines, a future, a timer, a scope...). Every poll that is
answered is followed by a new one, whose objects survive into the oldest generation, so a
broadcast to all of them set off two or three full collections of the whole heap, each a
stop-the-world pause of 0.3-0.6 s on this machine: measured, about half of the time a
10,000-agent broadcast took. Two remedies:

* :func:`freeze_startup`: what exists once the server is built (modules, the app) is moved
  to the permanent generation and never scanned again (about a third of the objects);
* :class:`CollectorHold`: while the wake channel works through a broadcast, automatic
  collection is off. When the queue is empty and the replies are out, and the re-polls
  that follow them had time to come in, one full collection runs and automatic collection
  is back on; after ``longest_s`` at the latest. Reference counting still frees everything
  that is not in a cycle meanwhile. One full collection per broadcast, after it, replaces
  the two or three during it (and the young generation, grown by the whole broadcast, is
  not scanned once per generation in turn).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)


def freeze_startup() -> None:
    """Collect once, then exempt every object that exists now from later collections
    (``gc.freeze``): for the server process, after imports and the app are built."""
    gc.collect()
    gc.freeze()


class CollectorHold:
    """Automatic garbage collection off during a broadcast (see the module docstring).

    Only undoes what it did: if collection was already off when asked to hold, it is left
    alone."""

    def __init__(self, longest_s: float = 5.0) -> None:
        self.longest_s = longest_s
        self.holds = 0
        """How many times collection was held (for tests and metrics)."""
        self._since: float | None = None
        self._spent = False
        self._release: asyncio.TimerHandle | None = None

    @property
    def holding(self) -> bool:
        return self._since is not None

    @property
    def settling(self) -> bool:
        """The broadcast is out; the release is scheduled."""
        return self._release is not None

    def hold(self) -> None:
        """A broadcast is being delivered: no collection now (at most ``longest_s`` from the
        first hold until a release)."""
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if self._since is not None:
            if time.monotonic() - self._since > self.longest_s:
                self._resume()
                self._spent = True  # not again until the queue was empty once
            return
        if self._spent or not gc.isenabled():
            return
        gc.disable()
        self.holds += 1
        self._since = time.monotonic()

    def settle(self, delay_s: float) -> None:
        """The queue is empty and the replies are out: release in ``delay_s`` (the re-polls
        come back meanwhile) unless another broadcast holds again first."""
        self._spent = False
        if self._since is None or self._release is not None:
            return
        loop = asyncio.get_running_loop()
        remaining = self.longest_s - (time.monotonic() - self._since)
        self._release = loop.call_later(max(0.0, min(delay_s, remaining)), self.release)

    def release(self) -> None:
        """Collection back on, after one full collection if it was held."""
        self._spent = False
        if self._release is not None:
            self._release.cancel()
            self._release = None
        if self._resume():
            started = time.perf_counter()
            gc.collect()
            log.debug(
                "wake channel: full collection after a broadcast: %.0f ms",
                (time.perf_counter() - started) * 1000,
            )

    def _resume(self) -> bool:
        if self._since is None:
            return False
        self._since = None
        gc.enable()
        return True

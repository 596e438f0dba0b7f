"""A self-pipe: a thread blocked in ``poll()`` with no timeout is woken by another thread.

The agent's threads sleep until something happens (a socket readable, a stop) instead of
waking up on a timeout to look: idle CPU stays near zero.
"""

from __future__ import annotations

import os
import threading


class WakePipe:
    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()  # close() vs wake(): never write to a reused fd number

    def fileno(self) -> int:
        """Register this for POLLIN next to the descriptors the thread waits on."""
        return self._r

    def wake(self) -> None:
        """From any thread; never blocks (a full pipe is already a pending wake-up)."""
        with self._lock:
            if self._w >= 0:
                try:
                    os.write(self._w, b"!")
                except OSError:
                    pass

    def drain(self) -> None:
        try:
            while os.read(self._r, 512):
                pass
        except OSError:  # empty (EAGAIN) or closed
            pass

    def close(self) -> None:
        with self._lock:
            for fd in (self._r, self._w):
                if fd >= 0:
                    os.close(fd)
            self._r = self._w = -1

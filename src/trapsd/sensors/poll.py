"""The portable fallback: a pid-list diff every ``poll_interval_s``.

It misses processes that live shorter than one interval. A new pid is judged again while it
is young (``YOUNG_S``): it is often caught between fork and exec, still running its parent's
file, and under load that window can last many polls.
"""

from __future__ import annotations

import select
import time

import psutil

from trapsd.sensors.killer import KillSensor

YOUNG_S = 3.0


class PollSensor(KillSensor):
    mechanism = "psutil-poll"

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        known: set[int] = set()
        young: dict[int, tuple[float, bytes]] = {}  # pid -> (judged again until, key judged)
        while not self._stopping.is_set():
            now = time.monotonic()
            if self.rescan_wanted:
                judged = self.rescan()
                known = set(judged)
                young = {pid: (now + YOUNG_S, key) for pid, key in judged.items()}
            else:
                current = set(psutil.pids())
                for pid, (until, key) in list(young.items()):
                    if now > until or pid not in current:
                        del young[pid]
                    else:
                        young[pid] = (until, self.inspect(pid, key) or key)
                for pid in sorted(current - known):
                    young[pid] = (now + YOUNG_S, self.inspect(pid))
                known = current
            poller.poll(self.settings.poll_interval_s * 1000)
            self.drain_wake()

    def health(self) -> tuple[bool, str]:
        healthy, detail = super().health()
        return healthy, f"{detail}; polls every {self.settings.poll_interval_s:g} s"[:255]

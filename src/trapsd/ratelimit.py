"""Duplicate security events collapse into one: a loop cannot flood the outbox.

The first detection of a (module, path, parent, action) goes out at once; the duplicates that
follow within ``window_s`` are only counted, and when the window closes one summary event
carries their number (``details.repeat_count``) and the time of the last one. Owned by the
writer thread; pure (the clock is passed in), so it is unit-tested without a sensor.
"""

from __future__ import annotations

import dataclasses

from trapsd.events import Detection

WINDOW_S = 60.0
MAX_KEYS = 4096

Key = tuple[str, str, str | None, str]


@dataclasses.dataclass(slots=True)
class _Window:
    until: float
    count: int = 0
    last: Detection | None = None


def _key(detection: Detection) -> Key:
    parent = detection.details.get("parent_image") or detection.parent_path
    return (detection.module, detection.process_path, parent, detection.action)


class EventLimiter:
    def __init__(self, window_s: float = WINDOW_S, max_keys: int = MAX_KEYS) -> None:
        self.window_s = window_s
        self.max_keys = max_keys
        self._windows: dict[Key, _Window] = {}
        self.suppressed = 0

    def admit(self, detection: Detection, now: float) -> list[Detection]:
        """The events to store now for this detection (it, or nothing if a duplicate)."""
        out = self.expire(now)
        key = _key(detection)
        window = self._windows.get(key)
        if window is not None:
            window.count += 1
            window.last = detection
            self.suppressed += 1
            return out
        if len(self._windows) >= self.max_keys:  # the oldest window closes early
            oldest = next(iter(self._windows))
            out += self._close(self._windows.pop(oldest))
        self._windows[key] = _Window(now + self.window_s)
        out.append(detection)
        return out

    def expire(self, now: float) -> list[Detection]:
        """Summary events of the windows that have closed by ``now``."""
        out: list[Detection] = []
        while self._windows:
            key = next(iter(self._windows))  # insertion order is expiry order
            window = self._windows[key]
            if window.until > now:
                break
            del self._windows[key]
            out += self._close(window)
        return out

    def next_expiry(self) -> float | None:
        """When the oldest open window closes (None: none is open)."""
        for window in self._windows.values():  # insertion order is expiry order
            return window.until
        return None

    def flush(self) -> list[Detection]:
        """Every pending summary (the agent is stopping)."""
        out: list[Detection] = []
        for window in self._windows.values():
            out += self._close(window)
        self._windows.clear()
        return out

    def _close(self, window: _Window) -> list[Detection]:
        if not window.count or window.last is None:
            return []
        summary = window.last
        summary.details = {
            **summary.details,
            "repeat_count": window.count,
            "repeat_window_s": self.window_s,
        }
        return [summary]

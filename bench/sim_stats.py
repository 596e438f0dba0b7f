"""The fleet simulator's figures (bench/sim.py): check-in latencies by minute, the part of
each until connected, errors, and the simulator's own event-loop lag."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from loadgen import percentile


@dataclass
class Stats:
    latencies_ms: list[float] = field(default_factory=list)
    connect_ms: list[float] = field(default_factory=list)
    """Of each latency, the part until the connection was established."""
    errors: dict[str, int] = field(default_factory=dict)
    events: int = 0
    minutes: list[int] = field(default_factory=list)
    """The minute of the run each latency was measured in (the first check-ins of a fleet
    cost more than its steady state: a reply from memory needs two check-ins before)."""
    lag_ms: list[float] = field(default_factory=list)
    lag_minutes: list[int] = field(default_factory=list)
    """The simulator's event-loop lag: how late a 50 ms sleep woke up, and in which minute."""
    started: float = field(default_factory=time.monotonic)
    cpu_s: list[float] = field(default_factory=list)
    """CPU time of each simulator process."""

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def minute(self) -> int:
        return int((time.monotonic() - self.started) // 60)

    def record(self, latency_ms: float, connect_ms: float = 0.0) -> None:
        self.latencies_ms.append(latency_ms)
        self.connect_ms.append(connect_ms)
        self.minutes.append(self.minute())

    def merge(self, other: Stats) -> None:
        self.latencies_ms += other.latencies_ms
        self.connect_ms += other.connect_ms
        self.minutes += other.minutes
        self.lag_ms += other.lag_ms
        self.lag_minutes += other.lag_minutes
        self.events += other.events
        self.cpu_s += other.cpu_s
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count

    def percentile(self, q: float, minute: int | None = None) -> float:
        latencies = self.latencies_ms
        if minute is not None:
            latencies = [v for v, m in zip(latencies, self.minutes, strict=True) if m == minute]
        return percentile(latencies, q)

    def by_minute(self) -> list[dict[str, float]]:
        rows = []
        for minute in sorted(set(self.minutes)):
            picked = [i for i, m in enumerate(self.minutes) if m == minute]
            latencies = [self.latencies_ms[i] for i in picked]
            connects = [self.connect_ms[i] for i in picked]
            lags = [v for v, m in zip(self.lag_ms, self.lag_minutes, strict=True) if m == minute]
            rows.append(
                {
                    "minute": minute,
                    "checkins": len(picked),
                    "p50_ms": round(percentile(latencies, 0.50), 1),
                    "p99_ms": round(percentile(latencies, 0.99), 1),
                    "connect_p99_ms": round(percentile(connects, 0.99), 1),
                    "over_900ms": sum(1 for v in latencies if v >= 900),
                    "loop_lag_p99_ms": round(percentile(lags, 0.99), 1),
                    "loop_lag_max_ms": round(max(lags, default=0.0), 1),
                }
            )
        return rows

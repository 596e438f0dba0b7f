"""In-process counters of one esmd process, rendered in the Prometheus text format.

No client library: the text format (version 0.0.4) is a few lines per family. Counters are
per process (each ``esmd serve`` keeps its own); Prometheus sums them across targets.
Increments are plain integer additions on the event loop or under the GIL: cheap enough
for the hot paths, and a lost increment under a thread race costs one count, not data.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, str]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in pairs.items()) + "}"


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.checkins = 0
        self.events_received = 0
        self.events_ingested = 0
        self.collectors: list[Callable[[], list[str]]] = []
        """More families (background jobs register theirs), appended to every render."""
        self.overloaded = 0
        self.waits = 0
        self.wakeups = 0

    def request(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1

    def render(
        self, agents_by_health: Mapping[str, int], version: str, agent_outbox_events: int = 0
    ) -> str:
        lines: list[str] = []

        def family(
            name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], float]]
        ) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                number = int(value) if float(value).is_integer() else value
                lines.append(f"{name}{_labels(labels)} {number}")

        family("esmd_build_info", "gauge", "esmd version.", [({"version": version}, 1)])
        family(
            "esmd_process_start_time_seconds",
            "gauge",
            "Start time of this esmd process (Unix time).",
            [({}, round(self.started, 3))],
        )
        family(
            "esmd_http_requests_total",
            "counter",
            "HTTP requests answered, by method, route template and status.",
            [
                ({"method": m, "route": r, "status": str(s)}, n)
                for (m, r, s), n in sorted(self.requests.items())
            ],
        )
        family(
            "esmd_agent_checkins_total",
            "counter",
            "Successful agent check-ins.",
            [({}, self.checkins)],
        )
        family(
            "esmd_events_received_total",
            "counter",
            "Security events in accepted batches (resends included).",
            [({}, self.events_received)],
        )
        family(
            "esmd_events_ingested_total",
            "counter",
            "Security events stored as new rows.",
            [({}, self.events_ingested)],
        )
        family(
            "esmd_overloaded_total",
            "counter",
            "Requests refused with 429 because too many were in flight.",
            [({}, self.overloaded)],
        )
        family(
            "esmd_agent_waits",
            "gauge",
            "Agent long-polls (wake channel) held open now.",
            [({}, self.waits)],
        )
        family(
            "esmd_agent_wakeups_total",
            "counter",
            "Long-polls answered because the policy changed or the agent had something pending.",
            [({}, self.wakeups)],
        )
        family(
            "esmd_agents",
            "gauge",
            "Enrolled agents by health (from the database at scrape time).",
            [({"health": h}, n) for h, n in sorted(agents_by_health.items())],
        )
        family(
            "esmd_agent_outbox_events",
            "gauge",
            "Events queued on agents, as their last check-ins reported (summed).",
            [({}, agent_outbox_events)],
        )
        for collect in self.collectors:
            lines.extend(collect())
        return "\n".join(lines) + "\n"

"""Following a listing live: new events by the time the ESM received them, changed agents.

:class:`EventFollower` keeps a cursor (the newest ``received_at`` seen, and how many events
it has seen at that instant) and asks the ESM for what came after with ``sort=received``, so
a poll neither misses nor repeats an event, however many share one instant.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trapsapi.admin_client import AdminClient

Row = dict[str, Any]
PAGE = 500


class EventFollower:
    def __init__(self, client: AdminClient, filters: dict[str, Any]) -> None:
        self.client = client
        self.filters = {k: v for k, v in filters.items() if v is not None}
        self.cursor: str | None = None  # received_at of the newest event seen
        self.skip = 0  # events seen at ``cursor``

    def _page(self, **extra: Any) -> Row:
        reply: Row = self.client.list_events(**{**self.filters, "sort": "received", **extra})
        return reply

    def start(self, tail: int) -> list[Row]:
        """The last ``tail`` events (oldest first); the cursor then points after every event.
        (Newest received first, reversed: the server's count stops at 10,000, so an offset
        from the end is not known.)"""
        newest: list[Row] = self._page(sort="received_desc", limit=max(tail, 1))["data"]
        rows = newest[::-1]
        if not rows:
            return []
        self.cursor = str(rows[-1]["received_at"])
        self.skip = int(self._page(received_since=self.cursor, limit=1).get("count", 0))
        return rows[-tail:] if tail else []

    def poll(self) -> list[Row]:
        """Every event received since the last call, oldest first."""
        new: list[Row] = []
        while True:
            extra: dict[str, Any] = {"offset": self.skip, "limit": PAGE}
            if self.cursor is not None:
                extra["received_since"] = self.cursor
            rows: list[Row] = self._page(**extra)["data"]
            for row in rows:
                received = str(row["received_at"])
                if received == self.cursor:
                    self.skip += 1
                else:
                    self.cursor, self.skip = received, 1
            new.extend(rows)
            if len(rows) < PAGE:
                return new


def every(interval: float, sleep: Callable[[float], None] = time.sleep) -> Iterator[int]:
    """0, 1, 2 … with ``interval`` seconds between (Ctrl-C ends it with KeyboardInterrupt)."""
    count = 0
    while True:
        yield count
        count += 1
        sleep(interval)


AGENT_CHANGE_KEYS = ("hostname", "health", "status", "agent_version", "policy_version", "os")


def changed_agents(previous: dict[str, tuple[Any, ...]], rows: list[Row]) -> list[Row]:
    """The agents that are new or whose shown state changed since the last listing."""
    changed = []
    for row in rows:
        state = tuple(row.get(key) for key in AGENT_CHANGE_KEYS)
        if previous.get(row["agent_id"]) != state:
            previous[row["agent_id"]] = state
            changed.append(row)
    return changed

"""What the dashboard needs from the ESM: a few read calls and two writes (verdict, triage).

:class:`trapsapi.admin_client.AdminClient` satisfies this protocol; the tests pass a fake
built from fixtures. Every method blocks on the network, so the dashboard calls them only
from thread workers, never from the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

Obj = dict[str, Any]
Clock = Callable[[], datetime]
"""Returns "now" (aware, UTC); injected so that tests and snapshots show fixed relative times."""

PAGE_LIMIT = 500
"""Rows fetched per page: the first on each refresh, the next ones as the analyst scrolls
down to the end of what is loaded (the server filters and pages; 100k rows never load at once)."""


class DashboardClient(Protocol):
    @property
    def server(self) -> str: ...

    def list_agents(self, **filters: Any) -> Obj: ...

    def list_events(self, **filters: Any) -> Obj: ...

    def list_hashes(self, **filters: Any) -> Obj: ...

    def set_verdict(self, sha256: str, verdict: str, comment: str = "") -> Obj: ...

    def triage_event(
        self,
        event_id: str,
        status: str | None = None,
        assignee: str | None = None,
        comment: str | None = None,
        agent_id: str | None = None,
    ) -> Obj: ...


def utc_now() -> datetime:
    return datetime.now(UTC)

"""What the dashboard needs from the ESM: a few read calls and one write (the hash verdict).

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
"""Rows fetched per refresh: the server filters and pages, the dashboard never pulls more."""


class DashboardClient(Protocol):
    @property
    def server(self) -> str: ...

    def list_agents(self, **filters: Any) -> Obj: ...

    def list_events(self, **filters: Any) -> Obj: ...

    def list_hashes(self, **filters: Any) -> Obj: ...

    def set_verdict(self, sha256: str, verdict: str, comment: str = "") -> Obj: ...


def utc_now() -> datetime:
    return datetime.now(UTC)

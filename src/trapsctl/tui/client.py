"""What the dashboard needs from the ESM: read calls, and the writes an analyst makes
(verdict, triage, actions: create and cancel).

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

    def event_counts(self, **filters: Any) -> Obj: ...

    def list_policies(self) -> Obj: ...

    def get_policy(self, name: str) -> Obj: ...

    def policy_history(self, **filters: Any) -> Obj: ...

    def explain_agent_policy(self, agent_id: str) -> Obj: ...

    def list_actions(self, **filters: Any) -> Obj: ...

    def get_action(self, action_id: str) -> Obj: ...

    def create_action(
        self,
        kind: str,
        target: Obj,
        params: Obj | None = None,
        expires_in_s: int = 86400,
        comment: str = "",
    ) -> Obj: ...

    def cancel_action(self, action_id: str) -> Obj: ...

    def list_servers(self) -> Obj: ...

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

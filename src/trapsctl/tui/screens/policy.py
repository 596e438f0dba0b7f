"""A policy's rules (Enter on the Policies tab), the history (``h``), and the explain of an
agent's effective policy (``x`` on the Agents tab): each fetched in a worker."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from trapsctl.tui.client import DashboardClient, Obj
from trapsctl.tui.policy_text import explain_text, history_text, policy_text
from trapsctl.tui.screens.fetch_screen import FetchScreen


class PolicyScreen(FetchScreen):
    TITLE_TEXT = "Policy"

    def __init__(self, name: str, version: Any = None) -> None:
        super().__init__()
        self.policy_name = name
        self.version = version
        self.title_text = f"Policy {name}"

    def load(self, client: DashboardClient) -> Obj:
        return client.get_policy(self.policy_name)

    def render_data(self, data: Obj) -> Text:
        return policy_text({**data, "version": self.version}, self.dashboard.clock())


class HistoryScreen(FetchScreen):
    """The version history, newest first: of one policy, or of all (``name`` None)."""

    TITLE_TEXT = "Policy history"
    LIMIT = 100

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.policy_name = name
        if name:
            self.title_text = f"History of {name}"

    def load(self, client: DashboardClient) -> Obj:
        filters: dict[str, Any] = {"limit": self.LIMIT}
        if self.policy_name:
            filters["policy"] = self.policy_name
        return client.policy_history(**filters)

    def render_data(self, data: Obj) -> Text:
        entries = list(data.get("data") or [])
        out = history_text(entries, self.dashboard.clock())
        if len(entries) >= self.LIMIT:
            out.append(f"\n… the newest {self.LIMIT} only (trapsctl policies history)", "dim")
        return out


class ExplainScreen(FetchScreen):
    """The effective policy of one agent, and which rule won each setting."""

    TITLE_TEXT = "Effective policy"

    def __init__(self, agent_id: str, hostname: str = "") -> None:
        super().__init__()
        self.agent_id = agent_id
        self.hostname = hostname
        if hostname:
            self.title_text = f"Effective policy of {hostname}"

    def load(self, client: DashboardClient) -> Obj:
        return client.explain_agent_policy(self.agent_id)

    def render_data(self, data: Obj) -> Text:
        return explain_text(data)

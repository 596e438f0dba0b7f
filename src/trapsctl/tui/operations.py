"""What the analyst sets in motion from the Agents and Actions tabs: actions (created for the
marked or selected agents, cancelled) and the explain of an agent's policy. Each change asks
first, then talks to the ESM in a thread worker; the answer comes back as a message and a
notification, so the dashboard never waits on the network.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App

from trapsapi.errors import ApiError
from trapsctl.output import printable
from trapsctl.tui.action_text import target_text
from trapsctl.tui.messages import ActionsSent
from trapsctl.tui.screens.action_dialog import KINDS, ActionDialog
from trapsctl.tui.screens.confirm import ConfirmDialog
from trapsctl.tui.screens.fetch_screen import FetchScreen
from trapsctl.tui.screens.policy import ExplainScreen

if TYPE_CHECKING:
    from trapsctl.tui.client import DashboardClient, Obj
    from trapsctl.tui.views.table_view import TableView


class Hostnames(Mapping[str, str]):
    def __init__(self, agents: dict[str, Obj]) -> None:
        self.agents = agents

    def __getitem__(self, agent_id: str) -> str:
        return str(self.agents[agent_id].get("hostname") or "")

    def __iter__(self) -> Iterator[str]:
        return iter(self.agents)

    def __len__(self) -> int:
        return len(self.agents)


def as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    return ApiError(f"unexpected {type(exc).__name__}: {exc}")


class Operations(App[None]):
    """The action centre's writes (a base of :class:`trapsctl.tui.app.DashboardApp`)."""

    client: DashboardClient
    views: dict[str, TableView]

    def hostnames(self) -> Mapping[str, str]:
        """Agent IDs to hostnames, from the agents the Agents tab holds (a view, not a copy:
        the Actions tab asks for every row it draws)."""
        return Hostnames(self.views["agents"].rows)

    def ask_action(self, kind: str, agents: list[Obj]) -> None:
        """The dialog (parameters, comment, confirmation), then one action per agent."""
        hostnames = [str(a.get("hostname") or a.get("agent_id")) for a in agents]
        ids = [str(a.get("agent_id")) for a in agents]

        def answered(answer: dict[str, Any] | None) -> None:
            if answer:
                self._send_actions(kind, ids, answer["params"], answer["comment"])

        self.push_screen(ActionDialog(kind, hostnames), answered)

    @work(thread=True, group="actions")
    def _send_actions(self, kind: str, agent_ids: list[str], params: Obj, comment: str) -> None:
        done: list[Obj] = []
        errors: list[str] = []
        for agent_id in agent_ids:
            try:
                target = {"agent_id": agent_id}
                done.append(self.client.create_action(kind, target, params, comment=comment))
            except Exception as exc:  # one refusal must not stop the others
                errors.append(as_api_error(exc).message)
        self.post_message(ActionsSent(KINDS[kind].title, done, errors))

    def ask_cancel(self, action: Obj) -> None:
        kind = printable(action.get("type")).replace("_", " ")
        where = target_text(action.get("target"), self.hostnames())
        body = f"{kind} on {where}\n{printable(action.get('id'))}\n\n"
        body += "Agents that have not received it will not; delivered ones run to their end."

        def answered(yes: bool | None) -> None:
            if yes:
                self._send_cancel(str(action.get("id")))

        self.push_screen(ConfirmDialog("Cancel this action?", body, "Cancel action"), answered)

    @work(thread=True, group="actions")
    def _send_cancel(self, action_id: str) -> None:
        try:
            result = self.client.cancel_action(action_id)
        except Exception as exc:
            self.post_message(ActionsSent("Cancel", [], [as_api_error(exc).message]))
        else:
            self.post_message(ActionsSent("Cancel", [result], []))

    @on(ActionsSent)
    def _actions_sent(self, message: ActionsSent) -> None:
        if message.done:
            count = len(message.done)
            what = "cancelled" if message.verb == "Cancel" else f"created ({message.verb})"
            self.notify(f"Action {what}" + (f" for {count} agents" if count > 1 else ""))
            clear_marks = getattr(self.views["agents"], "clear_marks", None)
            if clear_marks is not None:
                clear_marks()
            self.views["actions"].reload()
        if message.errors:
            first = message.errors[0]
            more = f" (and {len(message.errors) - 1} more)" if len(message.errors) > 1 else ""
            self.notify(f"{message.verb} refused: {first}{more}", severity="error")
        for screen in self.screen_stack:
            if isinstance(screen, FetchScreen):
                screen.action_reload()

    def explain(self, agent: Obj) -> None:
        hostname = str(agent.get("hostname") or "")
        self.push_screen(ExplainScreen(str(agent.get("agent_id")), hostname))

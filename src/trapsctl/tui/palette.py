"""The command palette's entries (Ctrl+P): every tab, and the main action on what is selected.

Built each time the palette opens, from the rows selected in the tabs at that moment, so the
entries name what they act on ("Isolate web-01", "Cancel action scan on db-01").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from trapsctl.output import printable
from trapsctl.tui.action_text import cancellable, target_text
from trapsctl.tui.screens.action import ActionScreen
from trapsctl.tui.screens.action_dialog import KINDS
from trapsctl.tui.screens.event_detail import EventScreen
from trapsctl.tui.screens.policy import HistoryScreen, PolicyScreen

if TYPE_CHECKING:
    from trapsctl.tui.app import DashboardApp


def palette_commands(app: DashboardApp, tabs: list[tuple[str, str]]) -> Iterator[SystemCommand]:
    for tab_id, title in tabs:
        name = title.split(" ", 1)[1]
        yield SystemCommand(
            f"Show {name}",
            f"Switch to the {name} tab ({title.split(' ', 1)[0]})",
            lambda tab=tab_id: app.action_show_tab(tab),
        )
    yield SystemCommand("Refresh", "Fetch the current tab again (r)", app.action_refresh)
    yield SystemCommand("Filter", "Filter the current tab as you type (/)", app.action_focus_filter)
    yield SystemCommand("Keys", "Show every key of the dashboard (?)", app.action_help)
    yield SystemCommand(
        "Policy history",
        "Every policy change, newest first",
        lambda: app.push_screen(HistoryScreen()),
    )
    yield SystemCommand(
        "Forensic bundles",
        "The forensic bundles held on the ESM; d downloads one (f)",
        lambda: app.push_screen("forensics"),
    )
    yield from _hash_commands(app)
    yield from _event_commands(app)
    yield from _agent_commands(app)
    yield from _policy_commands(app)
    yield from _action_commands(app)


def _hash_commands(app: DashboardApp) -> Iterator[SystemCommand]:
    view = app.active_view()
    row = view.selected()
    sha256 = view.hash_of(row) if row is not None else None
    if sha256:
        for verb, verdict in (("Block", "malware"), ("Allow", "benign")):
            yield SystemCommand(
                f"{verb} hash {sha256[:12]}…",
                f"{verb} the hash of the selected row ({verb[0].lower()}), asks first",
                lambda verdict=verdict: view.ask_verdict(sha256, verdict),
            )


def _event_commands(app: DashboardApp) -> Iterator[SystemCommand]:
    event = app.views["events"].selected()
    if event is not None:
        where = f"{printable(event.get('severity'))} on {printable(event.get('hostname'))}"
        yield SystemCommand(
            "Triage event", f"Status, assignee, comment of the {where} event (t)",
            lambda: app.triage(event),
        )  # fmt: skip
        yield SystemCommand(
            "Open event", f"Details and process tree of the {where} event (Enter)",
            lambda: app.push_screen(EventScreen(event)),
        )  # fmt: skip


AGENT_KEYS = {
    "isolate": "i",
    "unisolate": "u",
    "scan": "s",
    "checkin": "c",
    "retrieve_logs": "l",
    "kill_process": "k",
}


def _agent_commands(app: DashboardApp) -> Iterator[SystemCommand]:
    agents = app.views["agents"]
    targets = agents.targets()  # type: ignore[attr-defined]
    if not targets:
        return
    who = printable(targets[0].get("hostname"))
    if len(targets) > 1:
        who = f"{len(targets)} marked agents"
    for kind, key in AGENT_KEYS.items():
        title = KINDS[kind].title
        yield SystemCommand(
            f"{title} {who}", f"{KINDS[kind].effect} Asks first ({key} on Agents)",
            lambda kind=kind, targets=targets: app.ask_action(kind, targets),
        )  # fmt: skip
    first = targets[0]
    yield SystemCommand(
        f"Explain policy of {printable(first.get('hostname'))}",
        "The effective policy and which rule won each setting (x on Agents)",
        lambda: app.explain(first),
    )
    yield SystemCommand(
        f"Events of {printable(first.get('hostname'))}",
        "The Events tab filtered on this agent (e on Agents)",
        lambda: app.show_events_of(str(first.get("hostname") or "")),
    )


def _policy_commands(app: DashboardApp) -> Iterator[SystemCommand]:
    policy = app.views["policies"].selected()
    if policy is None:
        return
    name = str(policy.get("name"))
    yield SystemCommand(
        f"Open policy {printable(name)}", "Its targets and rules (Enter on Policies)",
        lambda: app.push_screen(PolicyScreen(name, policy.get("version"))),
    )  # fmt: skip
    yield SystemCommand(
        f"History of policy {printable(name)}", "Its changes, newest first (h on Policies)",
        lambda: app.push_screen(HistoryScreen(name)),
    )  # fmt: skip


def _action_commands(app: DashboardApp) -> Iterator[SystemCommand]:
    action = app.views["actions"].selected()
    if action is None:
        return
    kind = printable(action.get("type")).replace("_", " ")
    what = f"{kind} on {target_text(action.get('target'), app.hostnames())}"
    yield SystemCommand(
        f"Open action {what}", "Every agent's state and result (Enter on Actions)",
        lambda: app.push_screen(ActionScreen(str(action.get("id")), app.hostnames())),
    )  # fmt: skip
    if cancellable(action):
        yield SystemCommand(
            f"Cancel action {what}", "Where not yet delivered; asks first (c on Actions)",
            lambda: app.ask_cancel(action),
        )  # fmt: skip

"""The key help (``?``): every key of the dashboard on one screen."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("1 … 6", "tabs: Agents Events Hashes Policies Actions Servers"),
    ("/", "filter as you type (Enter: back to the table)"),
    ("Esc", "clear the filter; on a screen: back"),
    ("↑ ↓ PgUp PgDn", "move; near the end the next page loads from the ESM"),
    ("r", "refresh now (the tab also refreshes by itself)"),
    ("Space", "(Agents) mark; the action keys act on marked agents"),
    ("e", "(Agents) the events of the selected agent"),
    ("x", "(Agents) effective policy, the rule behind each value"),
    ("i u", "(Agents) isolate, unisolate; asks first"),
    ("s c l k", "(Agents) scan, check in, retrieve logs, kill a PID"),
    ("Enter", "open the event, policy or action"),
    ("t", "(Events) triage: status, assignee, comment"),
    ("f", "forensic bundles on the ESM (d downloads one)"),
    ("b a", "block / allow the selected hash; asks first"),
    ("h", "(Policies) the policy's change history"),
    ("c", "(Actions) cancel where not yet delivered; asks first"),
    ("Ctrl+S", "in a dialog: save or create"),
    ("Ctrl+P", "command palette: every tab and action"),
    ("?", "this help"),
    ("q", "quit"),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        padding: 1 2; border: thick $primary; background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        text = Text("trapsctl dashboard: keys\n\n", style="bold")
        for index, (keys, what) in enumerate(KEYS):
            if index:
                text.append("\n")
            text.append(f"{keys:<15}", style="bold cyan")
            text.append(what)
        text.append("\n\nEsc or ? closes this help.", style="dim")
        with VerticalScroll():
            yield Static(text)

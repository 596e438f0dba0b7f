"""An event on a screen of its own (Enter on the Events tab): what ran, its process tree
(ancestors from the event's fields and details), the forensics reference, the hash's verdict
and the triage; ``t`` triages, ``b``/``a`` block or allow the hash, Esc goes back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from trapsctl.ancestry import forensics_reference, process_chain
from trapsctl.output import printable
from trapsctl.tui.cells import ago, field_lines, styled, timestamp

if TYPE_CHECKING:
    from trapsctl.tui.app import DashboardApp

Obj = dict[str, Any]


def tree_text(event: Obj) -> Text:
    """The ancestor chain, oldest first, indented; the event's own process in bold."""
    out = Text()
    chain = process_chain(event)
    for index, link in enumerate(chain):
        if index:
            out.append("\n")
        out.append("   " * link["depth"] + ("└─ " if link["depth"] else ""), style="dim")
        pid = link["pid"] if link["pid"] is not None else "?"
        out.append(f"{printable(pid)} ", style="cyan")
        label = printable(link["cmdline"] or link["path"] or "?")
        out.append(label, style="bold" if index == len(chain) - 1 else "")
        if link.get("user"):
            out.append(f"  ({printable(link['user'])})", style="dim")
    return out


def event_text(event: Obj, verdict: Obj | None, now: Any) -> Text:
    out = Text()
    out.append(styled(event.get("severity")))
    out.append(" · ")
    out.append(styled(event.get("action")))
    out.append(f" · {printable(event.get('module'))}")
    out.append(f" · triage: {printable(event.get('status') or 'new').replace('_', ' ')}\n\n")
    details = event.get("details") or {}
    when = f"{timestamp(event.get('time'))} ({ago(event.get('time'), now).plain})"
    verdict_text = Text("none")
    if verdict is not None:
        verdict_text = styled(verdict.get("verdict"))
        verdict_text.append(f" by {printable(verdict.get('updated_by'))}")
    out.append(
        field_lines(
            [
                ("Time", when),
                ("Received", timestamp(event.get("received_at"))),
                ("Host", printable(event.get("hostname"))),
                ("Agent", printable(event.get("agent_id"))),
                ("User", f"{printable(event.get('user'))} (uid {printable(event.get('uid'))})"),
                ("Cmdline", Text(printable(event.get("cmdline")) or "-", overflow="fold")),
                ("SHA256", Text(printable(event.get("sha256")), overflow="fold")),
                ("Verdict", verdict_text),
                ("Rule", printable(details.get("rule"))),
                ("Forensics", printable(forensics_reference(event))),
                ("Assignee", printable(event.get("assignee"))),
                ("Comment", Text(printable(event.get("comment")) or "-", overflow="fold")),
                ("Event", printable(event.get("id"))),
            ],
            width=11,
        )
    )
    out.append("\n\nProcess tree\n", style="bold")
    out.append(tree_text(event))
    return out


class EventScreen(ModalScreen[None]):
    """One event, full screen; the keys act on it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Back"),
        Binding("t", "triage", "Triage"),
        Binding("b", "set_verdict('malware')", "Block hash"),
        Binding("a", "set_verdict('benign')", "Allow hash"),
    ]
    DEFAULT_CSS = """
    EventScreen { align: center middle; }
    EventScreen > VerticalScroll {
        width: 100%; max-width: 120; height: 1fr; padding: 0 1;
        border: thick $primary; background: $surface;
    }
    """

    def __init__(self, event: Obj) -> None:
        super().__init__()
        self.event = event

    @property
    def dashboard(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._text(), id="event-text")
        yield Footer()

    def _text(self) -> Text:
        verdict = self.dashboard.views["hashes"].rows.get(str(self.event.get("sha256")))
        return event_text(self.event, verdict, self.dashboard.clock())

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).border_title = "Event"

    def update_event(self, event: Obj) -> None:
        """The triaged event came back from the ESM: show it."""
        if event.get("id") == self.event.get("id"):
            self.event = event
            self.query_one("#event-text", Static).update(self._text())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "set_verdict":
            return True if self.event.get("sha256") else None
        return True

    def action_triage(self) -> None:
        self.dashboard.triage(self.event)

    def action_set_verdict(self, verdict: str) -> None:
        self.dashboard.views["events"].ask_verdict(self.event.get("sha256"), verdict)

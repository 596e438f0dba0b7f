"""The triage form of an event: status, assignee, comment (``t`` on an event)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from trapsapi.enums import TriageStatus
from trapsctl.output import printable

STATUSES = [(status.value.replace("_", " "), status.value) for status in TriageStatus]


class TriageDialog(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the changes (``status``, ``assignee``, ``comment``) or None (Esc)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]
    DEFAULT_CSS = """
    TriageDialog { align: center middle; }
    TriageDialog > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%; padding: 0 2;
        border: thick $accent; background: $surface;
    }
    TriageDialog .title { text-style: bold; }
    TriageDialog Label { margin-top: 1; }
    TriageDialog .buttons { height: auto; margin-top: 1; align-horizontal: right; }
    TriageDialog Button { margin-left: 2; }
    """

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        event = self.event
        title = f"Triage {printable(event.get('severity'))} event on "
        title += f"{printable(event.get('hostname'))}: {printable(event.get('process_path'))}"
        with Vertical():
            yield Label(Text(title), classes="title")
            yield Label("Status")
            yield Select(
                STATUSES, value=event.get("status") or "new", allow_blank=False, id="triage-status"
            )
            yield Label("Assignee (a user name; empty: nobody)")
            yield Input(value=event.get("assignee") or "", id="assignee", max_length=128)
            yield Label("Comment")
            yield Input(value=event.get("comment") or "", id="comment", max_length=4096)
            with Horizontal(classes="buttons"):
                yield Button("Cancel (Esc)", id="cancel")
                yield Button("Save (Ctrl+S)", id="save", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#triage-status", Select).focus()

    def changes(self) -> dict[str, Any]:
        """Only what differs from the event (the ESM refuses an empty triage)."""
        wanted = {
            "status": str(self.query_one("#triage-status", Select).value),
            "assignee": self.query_one("#assignee", Input).value.strip(),
            "comment": self.query_one("#comment", Input).value,
        }
        current = {
            "status": self.event.get("status") or "new",
            "assignee": self.event.get("assignee") or "",
            "comment": self.event.get("comment") or "",
        }
        return {key: value for key, value in wanted.items() if value != current[key]}

    def action_save(self) -> None:
        self.dismiss(self.changes() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_save()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.action_cancel()

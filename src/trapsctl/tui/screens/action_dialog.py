"""Create an action for the selected agent(s): what it does, for whom, its parameters, asks first.

Dismisses with ``{"params": …, "comment": …}`` or None (Esc). Parameters the ESM would refuse
(a PID that is not a number, a relative path) are caught here, with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from trapsctl.output import printable


@dataclass(frozen=True)
class ActionKind:
    kind: str
    title: str
    effect: str
    param: str = ""
    """The one parameter asked for (empty: none)."""
    prompt: str = ""
    default: str = ""


KINDS = {
    k.kind: k
    for k in [
        ActionKind(
            "isolate", "Isolate",
            "Cuts the network except to the ESM servers; rolls back unless an ESM answers.",
            "grace_s", "Grace (seconds, 10-3600)", "120",
        ),
        ActionKind("unisolate", "Unisolate", "Gives the network back."),
        ActionKind(
            "scan", "Scan", "Hashes the files under the paths and reports known malware.",
            "paths", "Paths (absolute, comma-separated)", "/tmp,/var/tmp,/dev/shm,/home",
        ),
        ActionKind("checkin", "Check in", "Asks the agent to check in now."),
        ActionKind("retrieve_logs", "Retrieve logs", "Uploads the agent's logs to the ESM."),
        ActionKind(
            "kill_process", "Kill process", "Kills the process and its descendants.",
            "pid", "PID", "",
        ),
    ]
}  # fmt: skip


def parse_param(kind: ActionKind, text: str) -> dict[str, Any]:
    """The ``params`` of the action; ValueError with a one-line reason when ``text`` is bad."""
    text = text.strip()
    if kind.param == "pid":
        if not text.isdigit() or not 2 <= int(text) <= 4_194_304:
            raise ValueError("PID: a number from 2 to 4194304")
        return {"pid": int(text)}
    if kind.param == "grace_s":
        if not text.isdigit() or not 10 <= int(text) <= 3600:
            raise ValueError("grace: seconds from 10 to 3600")
        return {"grace_s": int(text)}
    if kind.param == "paths":
        paths = [p.strip() for p in text.split(",") if p.strip()]
        if not paths or any(not p.startswith("/") for p in paths) or len(paths) > 32:
            raise ValueError("paths: 1 to 32 absolute paths, comma-separated")
        return {"paths": paths}
    return {}


class ActionDialog(ModalScreen[dict[str, Any] | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "create", "Create"),
    ]
    DEFAULT_CSS = """
    ActionDialog { align: center middle; }
    ActionDialog > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%; padding: 0 2;
        border: thick $warning; background: $surface;
    }
    ActionDialog .title { text-style: bold; }
    ActionDialog Label { margin-top: 1; }
    ActionDialog .error { color: $error; height: auto; }
    ActionDialog .buttons { height: auto; margin-top: 1; align-horizontal: right; }
    ActionDialog Button { margin-left: 2; }
    """

    def __init__(self, kind: str, hostnames: list[str]) -> None:
        super().__init__()
        self.kind = KINDS[kind]
        self.hostnames = hostnames

    def compose(self) -> ComposeResult:
        kind = self.kind
        names = ", ".join(printable(h) for h in self.hostnames[:5])
        if len(self.hostnames) > 5:
            names += f" and {len(self.hostnames) - 5} more"
        count = len(self.hostnames)
        with Vertical():
            yield Static(
                Text(f"{kind.title}: {count} agent{'s' if count != 1 else ''}?"), classes="title"
            )
            yield Static(Text(f"{names}\n{kind.effect}"))
            if kind.param:
                yield Label(kind.prompt)
                yield Input(value=kind.default, id="param", max_length=4096)
            yield Label("Comment (the audit log keeps it)")
            yield Input(id="comment", max_length=1024)
            yield Static("", classes="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel (Esc)", id="cancel")
                yield Button(f"{kind.title} (Ctrl+S)", id="create", variant="warning")

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    def action_create(self) -> None:
        text = self.query_one("#param", Input).value if self.kind.param else ""
        try:
            params = parse_param(self.kind, text)
        except ValueError as exc:
            self.query_one(".error", Static).update(Text(str(exc)))
            return
        comment = self.query_one("#comment", Input).value.strip()
        self.dismiss({"params": params, "comment": comment})

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_create()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.action_create()
        else:
            self.action_cancel()

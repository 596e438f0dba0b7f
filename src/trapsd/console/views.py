"""The console's tabs: each shows one control-socket reply (or why it cannot)."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from trapsd.console.text import cell, field_lines, mark, printable, styled, when

EVENT_LIMIT = 200


def unavailable_text(title: str, command: str) -> Text:
    return Text(
        f"{title}: not available in this agent version (trapsd does not know {command!r})",
        style="yellow",
    )


class DaemonView(Vertical):
    """A tab fed by one daemon command: a note line above a table."""

    COMMAND: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    COLUMNS: ClassVar[tuple[tuple[str, int], ...]] = ()
    """Header and width: fixed, so a refresh never re-measures (or jitters) the table."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.note = Static(Text("Loading …", style="dim"), classes="note")
        self.table: DataTable[Text] = DataTable(cursor_type="row", zebra_stripes=True)
        self.available = True

    def compose(self) -> ComposeResult:
        yield self.note
        yield self.table

    def on_mount(self) -> None:
        for header, width in self.COLUMNS:
            self.table.add_column(header, width=width)

    def request(self) -> dict[str, Any]:
        return {"cmd": self.COMMAND}

    def show_unavailable(self) -> None:
        self.available = False
        self.table.clear()
        self.note.update(unavailable_text(self.TITLE, self.COMMAND))

    def show_error(self, error: str) -> None:
        self.note.update(Text(f"{self.TITLE}: {printable(error)}", style="red"))

    def show(self, reply: dict[str, Any]) -> None:
        self.available = True
        rows = self.rows(reply)
        keep = self.table.cursor_row
        self.table.clear()
        for key, row in rows:
            self.table.add_row(*row, key=key)
        if rows:
            self.table.move_cursor(row=min(max(keep, 0), len(rows) - 1))
        self.note.update(self.summary(reply, len(rows)))

    def rows(self, reply: dict[str, Any]) -> list[tuple[str, list[Text]]]:
        raise NotImplementedError

    def summary(self, reply: dict[str, Any], count: int) -> Text:
        return Text(f"{count} shown", style="dim")


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class OverviewView(DaemonView):
    COMMAND = "status"
    TITLE = "Overview"
    COLUMNS = (("", 1), ("Module", 14), ("On", 3), ("Mode", 12), ("Mechanism", 14), ("Detail", 60))

    def rows(self, reply: dict[str, Any]) -> list[tuple[str, list[Text]]]:
        status = reply.get("status") or {}
        return [
            (
                f"{index}:{printable(m.get('name'))}",
                [
                    mark(m.get("healthy")),
                    cell(m.get("name"), "bold"),
                    cell(bool(m.get("enabled"))),
                    cell(m.get("mode")),
                    cell(m.get("mechanism")),
                    cell(m.get("detail")),
                ],
            )
            for index, m in enumerate(_dicts(status.get("modules")))
        ]

    def summary(self, reply: dict[str, Any], count: int) -> Text:
        status = reply.get("status") or {}
        running = status.get("running", True)
        line = Text()
        line.append_text(mark(running))
        line.append(f" trapsd {printable(status.get('version'))} ")
        line.append("running" if running else "stopped", style="green" if running else "red")
        line.append(f" (pid {printable(status.get('pid'))})")
        modules = _dicts(status.get("modules"))
        healthy = sum(1 for m in modules if m.get("healthy"))
        line.append(f" · modules {healthy}/{len(modules)} healthy")
        line.append(f" · outbox {printable(status.get('outbox_depth'))}")
        dropped = status.get("events_dropped") or 0
        line.append(f" · dropped {dropped}", style="yellow" if dropped else "")
        return line


class EventDetail(ModalScreen[None]):
    """Every field of one security event; Escape or Enter closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("enter", "dismiss", "Close", show=False),
    ]
    DEFAULT_CSS = """
    EventDetail { align: center middle; }
    EventDetail > VerticalScroll {
        width: 90%; max-width: 110; height: 80%; border: round $primary; padding: 0 1;
        background: $surface;
    }
    """

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.event = event

    def compose(self) -> ComposeResult:
        e = self.event
        fields: list[tuple[str, Any]] = [
            ("Time", when(e.get("time"))),
            ("Severity", styled(e.get("severity"))),
            ("Action", styled(e.get("action"))),
            ("Module", e.get("module")),
            ("Process", e.get("process_path")),
            ("SHA-256", e.get("sha256")),
            ("PID / PPID", f"{printable(e.get('pid'))} / {printable(e.get('ppid'))}"),
            ("Parent", e.get("parent_path")),
            ("User", f"{printable(e.get('user'))} (uid {printable(e.get('uid'))})"),
            ("Command line", e.get("cmdline")),
            ("Event id", e.get("id")),
        ]
        details = e.get("details")
        if isinstance(details, dict):
            fields += [(f"  {printable(k)}", json.dumps(v)) for k, v in sorted(details.items())]
        with VerticalScroll():
            yield Static(field_lines(fields), id="event-detail")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)


class EventsView(DaemonView):
    COMMAND = "events"
    TITLE = "Security events"
    COLUMNS = (
        ("Time", 20),
        ("Severity", 8),
        ("Action", 9),
        ("Module", 13),
        ("Process", 40),
        ("User", 12),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: dict[str, dict[str, Any]] = {}

    def request(self) -> dict[str, Any]:
        return {"cmd": self.COMMAND, "limit": EVENT_LIMIT}

    def rows(self, reply: dict[str, Any]) -> list[tuple[str, list[Text]]]:
        events = _dicts(reply.get("events"))
        events.sort(key=lambda e: str(e.get("time") or ""), reverse=True)
        self.events = {}
        rows = []
        for index, e in enumerate(events):
            key = f"{index}:{printable(e.get('id'))}"
            self.events[key] = e
            rows.append(
                (
                    key,
                    [
                        cell(when(e.get("time"))),
                        styled(e.get("severity"), {"informational": "info"}),
                        styled(e.get("action")),
                        cell(e.get("module")),
                        cell(e.get("process_path")),
                        cell(e.get("user")),
                    ],
                )
            )
        return rows

    def summary(self, reply: dict[str, Any], count: int) -> Text:
        return Text(f"{count} security events, newest first · Enter: details", style="dim")

    @on(DataTable.RowSelected)
    def _selected(self, message: DataTable.RowSelected) -> None:
        event = self.events.get(str(message.row_key.value))
        if event is not None:
            self.app.push_screen(EventDetail(event))


class ProcessesView(DaemonView):
    COMMAND = "processes"
    TITLE = "Protected processes"
    COLUMNS = (("PID", 7), ("PPID", 7), ("Executable", 44), ("UIDs", 12), ("Protected by", 30))

    def request(self) -> dict[str, Any]:
        return {"cmd": self.COMMAND, "all": False}

    def rows(self, reply: dict[str, Any]) -> list[tuple[str, list[Text]]]:
        rows = []
        for index, p in enumerate(_dicts(reply.get("processes"))):
            uids = p.get("uids")
            protected = p.get("protected_by")
            rows.append(
                (
                    f"{index}:{printable(p.get('pid'))}",
                    [
                        cell(p.get("pid")),
                        cell(p.get("ppid")),
                        cell(p.get("exe")),
                        cell(", ".join(map(str, uids)) if isinstance(uids, list) else uids),
                        cell(
                            ", ".join(map(str, protected))
                            if isinstance(protected, list)
                            else protected
                        ),
                    ],
                )
            )
        return rows

    def summary(self, reply: dict[str, Any], count: int) -> Text:
        return Text(
            f"{count} protected processes · {printable(reply.get('tracked'))} tracked via "
            f"{printable(reply.get('mechanism'))}",
            style="dim",
        )


class PolicyLogView(DaemonView):
    COMMAND = "policy-log"
    TITLE = "Policy changes"
    COLUMNS = (("Time", 20), ("Version", 7), ("Change", 90))

    def rows(self, reply: dict[str, Any]) -> list[tuple[str, list[Text]]]:
        entries = _dicts(reply.get("entries"))
        entries.sort(key=lambda e: str(e.get("time") or ""), reverse=True)
        rows = []
        for index, entry in enumerate(entries):
            rest = ", ".join(
                f"{k}={json.dumps(v) if isinstance(v, dict | list) else printable(v)}"
                for k, v in sorted(entry.items())
                if k not in ("time", "version")
            )
            rows.append(
                (
                    str(index),
                    [cell(when(entry.get("time"))), cell(entry.get("version")), cell(rest)],
                )
            )
        return rows

    def summary(self, reply: dict[str, Any], count: int) -> Text:
        return Text(f"{count} policy changes, newest first", style="dim")


class SettingsView(VerticalScroll):
    """The policy summary, the agent's settings and "Check in now"."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.policy = Static(Text("Loading …", style="dim"), id="policy-summary")
        self.agent = Static(Text("Loading …", style="dim"), id="agent-settings")
        self.result = Static(Text("Press c to check in now.", style="dim"), id="checkin-result")

    def compose(self) -> ComposeResult:
        yield Button("Check in now (c)", id="checkin", variant="primary")
        yield self.result
        yield self.policy
        yield self.agent

    def show_policy(self, reply: dict[str, Any]) -> None:
        modules = reply.get("modules")
        names = (
            ", ".join(printable(m.get("name") if isinstance(m, dict) else m) for m in modules)
            if isinstance(modules, list)
            else printable(modules)
        )
        behaviour = reply.get("behaviour")
        fields: list[tuple[str, Any]] = [
            ("Policy", Text("applied policy", style="bold underline")),
            ("Version", reply.get("policy_version")),
            ("Heartbeat", f"{printable(reply.get('heartbeat_interval_s'))} s"),
            ("Blocked hashes", reply.get("blocked_hashes")),
            ("Allowed hashes", reply.get("allowed_hashes")),
            ("Modules", names),
        ]
        if isinstance(behaviour, dict):
            fields += [(f"  {printable(k)}", json.dumps(v)) for k, v in sorted(behaviour.items())]
        self.policy.update(field_lines(fields))

    def show_policy_unavailable(self) -> None:
        self.policy.update(unavailable_text("Policy summary", "policy"))

    def show_status(self, status: dict[str, Any]) -> None:
        servers = status.get("servers")
        self.agent.update(
            field_lines(
                [
                    ("Agent", Text("agent settings", style="bold underline")),
                    ("Agent id", status.get("agent_id")),
                    ("Version", status.get("version")),
                    ("State dir", status.get("state_dir")),
                    ("Server", status.get("server")),
                    (
                        "Servers",
                        ", ".join(map(printable, servers)) if isinstance(servers, list) else None,
                    ),
                    ("Heartbeat", f"{printable(status.get('heartbeat_interval_s'))} s"),
                    ("Policy", status.get("policy_version")),
                    ("Console", status.get("console", "visible")),
                    ("Started", when(status.get("started_at"))),
                ]
            )
        )

    def checkin_started(self) -> None:
        self.result.update(Text("Checking in …", style="yellow"))

    def show_checkin(self, reply: dict[str, Any] | None, error: str | None) -> Text:
        if reply is not None and reply.get("ok"):
            version = printable(reply.get("policy_version"))
            text = Text(
                f"✓ Checked in to {printable(reply.get('server'))} at "
                f"{when(reply.get('time'))}: policy version {version}"
                f" ({printable(reply.get('elapsed_s'))} s)",
                style="green",
            )
        else:
            why = error if reply is None else reply.get("error")
            text = Text(f"✗ Check-in failed: {printable(why)}", style="red")
        self.result.update(text)
        return text

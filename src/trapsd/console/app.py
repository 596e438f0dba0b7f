"""The console App, built by :func:`make_console` on a source ``(request) -> reply``.

Every request runs in a thread worker and comes back as a message, so a slow or dead daemon
never freezes the UI: the banner says so and the refresh timer keeps retrying.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Button, Footer, Static, TabbedContent, TabPane
from textual.worker import Worker

from trapsapi.errors import TrapsError
from trapsd.console.source import Source
from trapsd.console.text import printable, when
from trapsd.console.views import (
    DaemonView,
    EventsView,
    OverviewView,
    PolicyLogView,
    ProcessesView,
    SettingsView,
)
from trapsd.control import DaemonNotRunning

Clock = Callable[[], datetime]
TABS = [
    ("overview", "1 Overview"),
    ("events", "2 Events"),
    ("processes", "3 Processes"),
    ("policy-log", "4 Policy log"),
    ("settings", "5 Settings"),
]


def utc_now() -> datetime:
    return datetime.now(UTC)


def _unknown(reply: dict[str, Any]) -> bool:
    """The daemon's answer to a command it does not know (an older agent)."""
    return reply.get("exit_code") == 2 and "unknown command" in str(reply.get("error"))


class Fetched(Message):
    def __init__(
        self, request: dict[str, Any], reply: dict[str, Any] | None, error: str, down: bool
    ) -> None:
        super().__init__()
        self.request, self.reply, self.error, self.down = request, reply, error, down


class CheckedIn(Message):
    def __init__(self, reply: dict[str, Any] | None, error: str | None) -> None:
        super().__init__()
        self.reply, self.error = reply, error


class ConsoleApp(App[None]):
    TITLE = "Traps Console"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show_tab('overview')", "Overview", show=False),
        Binding("2", "show_tab('events')", "Events", show=False),
        Binding("3", "show_tab('processes')", "Processes", show=False),
        Binding("4", "show_tab('policy-log')", "Policy log", show=False),
        Binding("5", "show_tab('settings')", "Settings", show=False),
        Binding("c", "checkin", "Check in"),
        Binding("r", "refresh", "Refresh"),
        Binding("q", "quit", "Quit"),
    ]
    CSS = """
    #header { height: 3; padding: 0 1; background: $panel; }
    #banner { height: auto; padding: 0 1; display: none; }
    #banner.-error { display: block; background: $error 40%; color: $text; }
    TabbedContent { height: 1fr; }
    TabbedContent > ContentSwitcher { height: 1fr; }
    TabPane { height: 1fr; padding: 0; }
    DaemonView { height: 1fr; }
    DaemonView .note { height: 1; padding: 0 1; }
    DaemonView DataTable { height: 1fr; }
    SettingsView { padding: 0 1; }
    SettingsView Static { margin-bottom: 1; }
    #checkin { margin: 1 0; }
    """

    def __init__(
        self,
        source: Source,
        *,
        clock: Clock = utc_now,
        refresh_interval: float = 3.0,
        slow_after: float = 3.0,
    ) -> None:
        super().__init__()
        self.source = source
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.slow_after = slow_after
        self.status: dict[str, Any] = {}
        self.daemon_down = False
        self.tabs = TabbedContent(initial="overview")
        self.overview = OverviewView(id="overview-view")
        self.views: dict[str, DaemonView] = {
            "overview": self.overview,
            "events": EventsView(id="events-view"),
            "processes": ProcessesView(id="processes-view"),
            "policy-log": PolicyLogView(id="policy-log-view"),
        }
        self.settings = SettingsView(id="settings-view")
        self.header = Static(Text("Connecting to trapsd …"), id="header")
        self.banner = Static("", id="banner")
        self._refresh: Worker[None] | None = None
        self._refresh_started = 0.0
        self._checkin: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        yield self.header
        yield self.banner
        with self.tabs:
            for tab_id, title in TABS:
                with TabPane(title, id=tab_id):
                    yield self.settings if tab_id == "settings" else self.views[tab_id]
        yield Footer()

    def on_mount(self) -> None:
        self.overview.table.focus()
        self.action_refresh()
        if self.refresh_interval > 0:
            self.set_interval(self.refresh_interval, self._tick, name="refresh")

    # --- fetching ---------------------------------------------------------------------------

    def _requests(self) -> list[dict[str, Any]]:
        """Status for the header, plus what the current tab shows."""
        requests: list[dict[str, Any]] = [{"cmd": "status"}]
        active = self.tabs.active
        if active == "settings":
            requests.append({"cmd": "policy"})
        elif active in self.views and active != "overview":
            requests.append(self.views[active].request())
        return requests

    def _tick(self) -> None:
        worker = self._refresh
        if worker is not None and worker.is_running:
            waited = time.monotonic() - self._refresh_started
            if waited > self.slow_after:
                self._show_banner(f"trapsd is slow: no reply for {waited:.0f}s, still waiting")
            return
        self.action_refresh()

    def action_refresh(self) -> None:
        if self._refresh is not None and self._refresh.is_running:
            return
        self._refresh_started = time.monotonic()
        self._refresh = self._fetch(self._requests())

    @work(thread=True, group="refresh", exit_on_error=False)
    def _fetch(self, requests: list[dict[str, Any]]) -> None:
        for request in requests:
            try:
                reply = self.source(request)
            except DaemonNotRunning as exc:
                self.post_message(Fetched(request, None, exc.message, True))
                return
            except TrapsError as exc:
                self.post_message(Fetched(request, None, exc.message, False))
                return
            except Exception as exc:  # a bad reply must not end the refresh for good
                self.post_message(Fetched(request, None, f"{type(exc).__name__}: {exc}", False))
                return
            self.post_message(Fetched(request, reply, "", False))

    @on(Fetched)
    def _fetched(self, message: Fetched) -> None:
        command = message.request.get("cmd")
        reply = message.reply
        if reply is None:
            self.daemon_down = message.down
            retry = (
                f"retrying every {self.refresh_interval:g}s"
                if self.refresh_interval > 0
                else "press r to retry"
            )
            lead = "trapsd is not running" if message.down else "trapsd did not answer"
            self._show_banner(f"{lead}: {message.error} ({retry})")
            self._show_header()
            return
        if command == "status":
            self.daemon_down = False
            if reply.get("ok") and isinstance(reply.get("status"), dict):
                self.status = reply["status"]
                self._show_banner(None)
                self.overview.show(reply)
                self.settings.show_status(self.status)
            else:
                self._show_banner(f"trapsd status failed: {reply.get('error')}")
            self._show_header()
            return
        view = self.views.get(self._tab_of(command))
        if command == "policy":
            if reply.get("ok"):
                self.settings.show_policy(reply)
            elif _unknown(reply):
                self.settings.show_policy_unavailable()
        elif view is not None:
            if reply.get("ok"):
                view.show(reply)
            elif _unknown(reply):
                view.show_unavailable()
            else:
                view.show_error(str(reply.get("error")))

    @staticmethod
    def _tab_of(command: Any) -> str:
        return {"events": "events", "processes": "processes", "policy-log": "policy-log"}.get(
            str(command), ""
        )

    # --- check in now -----------------------------------------------------------------------

    def action_checkin(self) -> None:
        if self._checkin is not None and self._checkin.is_running:
            self.notify("A check-in is already running")
            return
        self.settings.checkin_started()
        self._checkin = self._checkin_worker()

    @on(Button.Pressed, "#checkin")
    def _checkin_pressed(self) -> None:
        self.action_checkin()

    @work(thread=True, group="checkin", exit_on_error=False)
    def _checkin_worker(self) -> None:
        try:
            reply = self.source({"cmd": "checkin"})
        except TrapsError as exc:
            self.post_message(CheckedIn(None, exc.message))
            return
        except Exception as exc:
            self.post_message(CheckedIn(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(CheckedIn(reply, None))

    @on(CheckedIn)
    def _checked_in(self, message: CheckedIn) -> None:
        text = self.settings.show_checkin(message.reply, message.error)
        ok = message.reply is not None and bool(message.reply.get("ok"))
        self.notify(text.plain.lstrip("✓✗ "), severity="information" if ok else "error")
        self.action_refresh()

    # --- chrome -----------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.tabs.active = tab

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        view = self.views.get(self.tabs.active)
        if view is not None:
            view.table.focus()
        self.action_refresh()

    def _show_banner(self, text: str | None) -> None:
        self.banner.set_class(text is not None, "-error")
        self.banner.update(Text(printable(text)) if text is not None else "")

    def _show_header(self) -> None:
        s = self.status
        head = Text()
        head.append("Traps agent ", style="bold")
        head.append(printable(s.get("agent_id") or "unknown"))
        head.append(f"  trapsd {printable(s.get('version'))}", style="dim")
        head.append("\nServer ", style="bold")
        head.append(printable(s.get("server")))
        if self.daemon_down:
            head.append("  ✗ daemon not running", style="bold red")
        elif s.get("connected"):
            head.append("  ✓ connected", style="green")
        else:
            head.append("  ✗ not connected", style="red")
        head.append("\nLast check-in ", style="bold")
        head.append(when(s.get("last_success"), self.clock()))
        head.append("  Policy ", style="bold")
        head.append(printable(s.get("policy_version")))
        self.header.update(head)


def make_console(
    source: Source,
    *,
    clock: Clock = utc_now,
    refresh_interval: float = 3.0,
    slow_after: float = 3.0,
) -> ConsoleApp:
    """The console on ``source``; the command and the tests both build it here."""
    return ConsoleApp(source, clock=clock, refresh_interval=refresh_interval, slow_after=slow_after)

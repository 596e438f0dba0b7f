"""``trapsctl dashboard``: the Textual app for SOC analysts, built by :func:`make_dashboard`.

The app never touches the network on its event loop: every call to the ESM runs in a thread
worker of a tab (see :mod:`trapsctl.tui.views.table_view`) and comes back as a message.
When the ESM is slow or gone the status line says so and the refresh timer keeps retrying.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from trapsapi.errors import ApiError, AuthError, Unreachable
from trapsctl.tui.client import Clock, DashboardClient, utc_now
from trapsctl.tui.messages import Counted, Loaded, LoadFailed, Triaged, VerdictChanged
from trapsctl.tui.operations import Operations
from trapsctl.tui.palette import palette_commands
from trapsctl.tui.screens.event_detail import EventScreen
from trapsctl.tui.screens.help import HelpScreen
from trapsctl.tui.screens.triage import TriageDialog
from trapsctl.tui.views.actions import ActionsView
from trapsctl.tui.views.agents import AgentsView
from trapsctl.tui.views.events import EventsView
from trapsctl.tui.views.forensics import ForensicsScreen
from trapsctl.tui.views.hashes import HashesView
from trapsctl.tui.views.policies import PoliciesView
from trapsctl.tui.views.servers import ServersView
from trapsctl.tui.views.table_view import TableView

TABS = [
    ("agents", "1 Agents"),
    ("events", "2 Events"),
    ("hashes", "3 Hashes"),
    ("policies", "4 Policies"),
    ("actions", "5 Actions"),
    ("servers", "6 Servers"),
]


class DashboardApp(Operations):
    TITLE = "Traps"
    SCREENS: ClassVar[dict[str, Callable[[], Screen[Any]]]] = {"forensics": ForensicsScreen}
    HORIZONTAL_BREAKPOINTS = [
        (0, "-narrow"),
        (120, "-wide"),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "show_tab('agents')", "Agents", show=False),
        Binding("2", "show_tab('events')", "Events", show=False),
        Binding("3", "show_tab('hashes')", "Hashes", show=False),
        Binding("4", "show_tab('policies')", "Policies", show=False),
        Binding("5", "show_tab('actions')", "Actions", show=False),
        Binding("6", "show_tab('servers')", "Servers", show=False),
        Binding("f", "push_screen('forensics')", "Forensics", show=False),
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear", show=False),
        Binding("r", "refresh", "Refresh"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]
    CSS = """
    TabbedContent { height: 1fr; }
    TabbedContent > ContentSwitcher { height: 1fr; }
    TabPane { height: 1fr; padding: 0; }
    #status { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    #status.-error { background: $error 40%; color: $text; }
    .-wide TableView .body { layout: horizontal; }
    .-wide TableView .detail {
        width: 72; height: 1fr; max-height: 100%;
        border-top: none; border-left: solid $primary-lighten-1;
    }
    """

    def __init__(
        self,
        client: DashboardClient,
        *,
        clock: Clock = utc_now,
        refresh_interval: float = 5.0,
        slow_after: float = 3.0,
    ) -> None:
        super().__init__()
        self.client = client
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.slow_after = slow_after
        """Seconds without a reply after which the status line says the ESM is slow."""
        self.sub_title = client.server
        self.counts: dict[str, Counted] = {}
        self.failure: str | None = None
        # Kept, not queried: messages from workers may still arrive while the app shuts down.
        self.tabs = TabbedContent(initial="agents")
        self.views: dict[str, TableView] = {
            "agents": AgentsView(id="agents-view"),
            "events": EventsView(id="events-view"),
            "hashes": HashesView(id="hashes-view"),
            "policies": PoliciesView(id="policies-view"),
            "actions": ActionsView(id="actions-view"),
            "servers": ServersView(id="servers-view"),
        }
        self.status_line = Static(Text("Loading …"), id="status")

    def compose(self) -> ComposeResult:
        yield Header()
        with self.tabs:
            for tab_id, title in TABS:
                with TabPane(title, id=tab_id):
                    yield self.views[tab_id]
        yield self.status_line
        yield Footer()

    def on_mount(self) -> None:
        self.active_view().focus_table()
        for view in self.views.values():
            view.reload(if_idle=True)  # the first TabActivated may have started one
        if self.refresh_interval > 0:
            self.set_interval(self.refresh_interval, self._tick, name="refresh")

    # --- views ------------------------------------------------------------------------------

    def active_view(self) -> TableView:
        return self.views.get(self.tabs.active) or self.views["agents"]

    def _tick(self) -> None:
        """The periodic refresh: the current tab, unless its last fetch is still running."""
        view = self.active_view()
        waited = time.monotonic() - view.fetch_started
        if view.in_flight and waited > self.slow_after:
            self.failure = f"ESM slow — no reply for {waited:.0f}s, still waiting"
            self._show_status()
        view.reload(if_idle=True)

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from palette_commands(self, TABS)

    @on(TabbedContent.TabActivated)
    def _tab_changed(self, event: TabbedContent.TabActivated) -> None:
        view = self.active_view()
        view.focus_table()
        view.reload(if_idle=True)
        self._show_status()

    # --- actions ----------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        self.tabs.active = tab

    def show_events_of(self, hostname: str) -> None:
        self.tabs.active = "events"
        self.views["events"].set_filter(f"host:{hostname}")  # filtered by the server

    def action_focus_filter(self) -> None:
        self.active_view().focus_filter()

    def action_clear_filter(self) -> None:
        view = self.active_view()
        view.set_filter("")
        view.focus_table()

    def action_refresh(self) -> None:
        self.active_view().reload()

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    # --- status line ------------------------------------------------------------------------

    @on(Counted)
    def _counted(self, message: Counted) -> None:
        self.counts[message.source] = message
        self.failure = None
        self._show_status()

    @on(LoadFailed)
    def _load_failed(self, message: LoadFailed) -> None:
        error = message.error
        retry = (
            f"retrying every {self.refresh_interval:g}s"
            if self.refresh_interval > 0
            else "press r to retry"
        )
        if isinstance(error, Unreachable):
            text = f"ESM unreachable — {retry} ({error.message})"
        elif isinstance(error, AuthError):
            text = f"Not authorised: {error.message} (run trapsctl login)"
        else:
            text = f"ESM error: {error.message} — {retry}"
        self.failure = text
        self._show_status()

    def _show_status(self) -> None:
        status = self.status_line
        status.set_class(self.failure is not None, "-error")
        if self.failure is not None:
            status.update(Text(self.failure))
            return
        source = self.active_view().SOURCE
        counted = self.counts.get(source)
        if counted is None:
            status.update(Text("Loading …"))
            return
        line = f"{counted.shown} shown"
        if counted.shown != counted.fetched:
            line += f" of {counted.fetched} loaded"
        if counted.first:  # a window further down the list
            last = counted.first + counted.fetched
            line += f" (rows {counted.first + 1}-{last} of {counted.total} on the server)"
        elif counted.total > counted.fetched:
            line += f" (newest {counted.fetched} of {counted.total} on the server; more on scroll)"
        else:
            line += f" · {counted.total} on the server"
        if counted.skipped:
            line += f" · {counted.skipped} malformed rows skipped"
        if self.active_view().browsing:
            line += " · live refresh paused (r: newest)"
        line += f" · updated {self.clock():%H:%M:%SZ}"
        status.update(Text(line))

    @on(Loaded)
    def _loaded(self, message: Loaded) -> None:
        if message.source == "hashes":  # the events' details show the verdict of their hash
            self.views["events"].show_detail()

    # --- triage -----------------------------------------------------------------------------

    def triage(self, event: dict[str, Any]) -> None:
        """Ask for the changes, then send them in a worker (the answer comes as Triaged)."""

        def answered(changes: dict[str, Any] | None) -> None:
            if changes:
                self._send_triage(event, changes)

        self.push_screen(TriageDialog(event), answered)

    @work(thread=True, group="triage")
    def _send_triage(self, event: dict[str, Any], changes: dict[str, Any]) -> None:
        event_id = str(event.get("id"))
        try:
            result = self.client.triage_event(
                event_id, agent_id=str(event.get("agent_id")), **changes
            )
        except ApiError as exc:
            self.post_message(Triaged(event_id, error=exc))
        except Exception as exc:  # never take the dashboard down
            error = ApiError(f"unexpected {type(exc).__name__}: {exc}")
            self.post_message(Triaged(event_id, error=error))
        else:
            self.post_message(Triaged(event_id, event=result))

    @on(Triaged)
    def _triaged(self, message: Triaged) -> None:
        if message.error is not None or message.event is None:
            error = message.error.message if message.error else "no reply"
            self.notify(f"Event not triaged: {error}", severity="error")
            return
        status = str(message.event.get("status") or "new").replace("_", " ")
        self.notify(f"Event triaged: {status}")
        events = self.views["events"]
        if isinstance(events, EventsView):
            events.replace_row(message.event)
        for screen in self.screen_stack:
            if isinstance(screen, EventScreen):
                screen.update_event(message.event)

    @on(VerdictChanged)
    def _verdict_changed(self, message: VerdictChanged) -> None:
        if message.error is not None:
            self.notify(f"Verdict not set: {message.error.message}", severity="error")
            return
        word = "Blocked" if message.verdict == "malware" else "Allowed"
        self.notify(f"{word} {message.sha256[:16]}… ({message.verdict})")
        self.views["hashes"].reload()


def make_dashboard(
    client: DashboardClient,
    *,
    clock: Clock = utc_now,
    refresh_interval: float = 5.0,
    slow_after: float = 3.0,
) -> DashboardApp:
    """The dashboard on ``client``; the command and the tests both build it here."""
    return DashboardApp(
        client, clock=clock, refresh_interval=refresh_interval, slow_after=slow_after
    )

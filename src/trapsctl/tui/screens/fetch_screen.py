"""A full-screen view of one thing fetched from the ESM (a policy, an action, an explain…).

The fetch runs in a thread worker and comes back as a :class:`Fetched` message, so Esc and
every other key answer at once even while the ESM is slow or gone; the screen shows
"Loading …", then the text, or the error and how to retry (``r``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from trapsapi.errors import ApiError
from trapsctl.output import printable
from trapsctl.tui.messages import Fetched

if TYPE_CHECKING:
    from trapsctl.tui.app import DashboardApp
    from trapsctl.tui.client import DashboardClient


class FetchScreen(ModalScreen[None]):
    """Subclasses set ``TITLE_TEXT`` and implement :meth:`load` and :meth:`render_data`."""

    TITLE_TEXT: ClassVar[str] = ""
    LIVE: ClassVar[bool] = False
    """Fetch again at the dashboard's refresh interval while :meth:`still_changing`."""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Back"),
        Binding("r", "reload", "Refresh"),
    ]
    DEFAULT_CSS = """
    FetchScreen { align: center middle; }
    FetchScreen > VerticalScroll {
        width: 100%; max-width: 140; height: 1fr; padding: 0 1;
        border: thick $primary; background: $surface;
    }
    FetchScreen .state { color: $text-muted; }
    FetchScreen .state.-error { color: $error; text-style: bold; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.data: Any = None
        self.loading = False
        self.title_text = self.TITLE_TEXT

    @property
    def dashboard(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    # --- hooks ------------------------------------------------------------------------------

    def load(self, client: DashboardClient) -> Any:
        """Blocking calls to the ESM (runs in a thread)."""
        raise NotImplementedError

    def render_data(self, data: Any) -> RenderableType:
        raise NotImplementedError

    def still_changing(self, data: Any) -> bool:
        return True

    # --- layout and loading -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text("Loading …"), classes="state")
            yield Static(Text(""), classes="body")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).border_title = Text(printable(self.title_text))
        self.action_reload()
        interval = self.dashboard.refresh_interval
        if self.LIVE and interval > 0:
            self.set_interval(interval, self._tick, name="screen-refresh")

    def _tick(self) -> None:
        if not self.loading and (self.data is None or self.still_changing(self.data)):
            self.action_reload()

    def action_reload(self) -> None:
        if self.loading:
            return
        self.loading = True
        if self.data is None:
            self._state("Loading …")  # a refresh keeps what is shown until the reply
        self._load(self.dashboard.client)

    @work(thread=True, exclusive=True, group="screen-fetch")
    def _load(self, client: DashboardClient) -> None:
        worker = get_current_worker()
        try:
            data = self.load(client)
        except ApiError as exc:
            if not worker.is_cancelled:
                self.post_message(Fetched(type(self).__name__, error=exc))
            return
        except Exception as exc:  # a bad reply must not take the dashboard down
            if not worker.is_cancelled:
                error = ApiError(f"unexpected {type(exc).__name__}: {exc}")
                self.post_message(Fetched(type(self).__name__, error=error))
            return
        if not worker.is_cancelled:
            self.post_message(Fetched(type(self).__name__, data=data))

    @on(Fetched)
    def _fetched(self, message: Fetched) -> None:
        if message.key != type(self).__name__:
            return
        message.stop()
        self.loading = False
        if message.error is not None:
            self._state(f"Could not load: {message.error.message} (r: retry)", error=True)
            return
        self.data = message.data
        self._state("")
        self.query_one(".body", Static).update(self.render_data(message.data))
        self.refresh_bindings()

    def _state(self, text: str, *, error: bool = False) -> None:
        state = self.query_one(".state", Static)
        state.set_class(error, "-error")
        state.display = bool(text)
        state.update(Text(text))

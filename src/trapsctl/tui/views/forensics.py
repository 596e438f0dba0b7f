"""Forensics (``f``): the bundles the ESM holds, on a screen of their own; ``d`` downloads the
selected bundle into the current directory (in a worker, SHA-256 checked, never partial).

A screen rather than a tab, so that the dashboard's tabs stay as they are; it reuses the
tabs' :class:`TableView` (paging, filter as you type, detail pane) for the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from trapsapi.errors import ApiError
from trapsctl.output import byte_size, printable
from trapsctl.tui.cells import ago, cell, field_lines, timestamp
from trapsctl.tui.client import PAGE_LIMIT, DashboardClient, Obj
from trapsctl.tui.messages import Counted, LoadFailed
from trapsctl.tui.views.table_view import TableView, paged


class ForensicsClient(DashboardClient, Protocol):
    """The two calls this screen adds to :class:`DashboardClient` (AdminClient has them)."""

    def list_forensics(self, **filters: Any) -> Obj: ...

    def download_forensics(self, bundle_id: str, write: Any) -> Obj: ...


@dataclass
class Downloaded(Message):
    bundle_id: str
    path: Path | None = None
    error: str | None = None


def download(client: ForensicsClient, row: Obj, directory: Path) -> Path:
    """Save the bundle as ``<agent's bundle ID>.json.gz`` (``-1``, ``-2`` … if taken)."""
    stem = Path(str(row.get("bundle_id") or row["id"])).name
    target = directory / f"{stem}.json.gz"
    number = 0
    while target.exists():
        number += 1
        target = directory / f"{stem}-{number}.json.gz"
    partial = directory / f".{target.name}.part"
    try:
        with partial.open("wb") as sink:
            client.download_forensics(str(row["id"]), sink.write)
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


class ForensicsView(TableView):
    SOURCE = "forensics"
    PLACEHOLDER = "/ filter bundles: hostname, event, bundle ID …"
    COLUMNS: ClassVar[list[tuple[str, int | None]]] = [
        ("RECEIVED", 9),
        ("HOSTNAME", None),
        ("EVENT", 13),
        ("SIZE", 10),
        ("BUNDLE", 12),
    ]

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        forensics = cast(ForensicsClient, client)
        return forensics.list_forensics(limit=PAGE_LIMIT, **paged(offset))

    def server_filter(self) -> bool:
        return False

    def key_of(self, row: Obj) -> str:
        return str(row["id"])

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        return [
            ago(row.get("received_at"), now),
            cell(row.get("hostname")),
            cell(printable(row.get("event_id") or "-")[:13]),
            cell(byte_size(row.get("size"))),
            cell(printable(row.get("id"))[:12]),
        ]

    def haystack(self, row: Obj) -> str:
        keys = ("id", "hostname", "event_id", "bundle_id", "agent_id")
        return " ".join(str(row.get(k)) for k in keys if row.get(k)).lower()

    def detail(self, row: Obj, now: datetime) -> Text:
        received = f"{timestamp(row.get('received_at'))} ({ago(row.get('received_at'), now).plain})"
        out = field_lines(
            [
                ("Bundle", printable(row.get("id"))),
                ("Hostname", printable(row.get("hostname"))),
                ("Agent", printable(row.get("agent_id"))),
                ("Event", printable(row.get("event_id") or "-")),
                ("Size", byte_size(row.get("size"))),
                ("SHA256", printable(row.get("sha256"))),
                ("Written", timestamp(row.get("created_at"))),
                ("Received", received),
                ("Action", printable(row.get("action_id") or "-")),
            ]
        )
        out.append("\n\nd", style="bold")
        out.append(" download to the current directory")
        return out


class ForensicsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,f", "dismiss", "Back"),
        Binding("d", "download", "Download"),
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("r", "refresh", "Refresh"),
    ]
    DEFAULT_CSS = """
    ForensicsScreen #forensics-status { height: 1; padding: 0 1; background: $panel; }
    ForensicsScreen #forensics-status.-error { background: $error 40%; }
    """

    def __init__(self, directory: Path | None = None) -> None:
        super().__init__()
        self.directory = directory
        self.view = ForensicsView(id="forensics-view")
        self.status = Static(Text("Forensic bundles on the ESM · Loading …"), id="forensics-status")

    def compose(self) -> ComposeResult:
        yield Header()
        yield self.view
        yield self.status
        yield Footer()

    def on_mount(self) -> None:
        self.view.focus_table()
        self.view.reload(if_idle=True)

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.app.pop_screen()

    def action_focus_filter(self) -> None:
        self.view.focus_filter()

    def action_refresh(self) -> None:
        self.view.reload()

    def action_download(self) -> None:
        row = self.view.selected()
        if row is None:
            return
        self.status.update(Text(f"Downloading {printable(row.get('id'))} …"))
        self._download(cast(ForensicsClient, self.view.dashboard.client), row)

    @work(thread=True, group="download")
    def _download(self, client: ForensicsClient, row: Obj) -> None:
        bundle_id = str(row.get("id"))
        try:
            path = download(client, row, self.directory or Path.cwd())
        except (ApiError, OSError) as exc:
            text = exc.message if isinstance(exc, ApiError) else (exc.strerror or str(exc))
            self.post_message(Downloaded(bundle_id, error=text))
        except Exception as exc:  # never take the dashboard down
            self.post_message(Downloaded(bundle_id, error=f"unexpected {type(exc).__name__}"))
        else:
            self.post_message(Downloaded(bundle_id, path=path))

    @on(Downloaded)
    def _downloaded(self, message: Downloaded) -> None:
        if message.error is not None:
            self.status.set_class(True, "-error")
            self.status.update(Text(f"Not downloaded: {message.error}"))
            self.notify(f"Bundle not downloaded: {message.error}", severity="error")
            return
        self.status.set_class(False, "-error")
        self.status.update(Text(f"Saved {message.path}"))
        self.notify(f"Saved {message.path}")

    @on(Counted)
    def _counted(self, message: Counted) -> None:
        if message.source != ForensicsView.SOURCE:
            return
        self.status.set_class(False, "-error")
        self.status.update(
            Text(f"Forensic bundles: {message.shown} shown · {message.total} on the ESM")
        )

    @on(LoadFailed)
    def _load_failed(self, message: LoadFailed) -> None:
        self.status.set_class(True, "-error")
        self.status.update(Text(f"ESM error: {message.error.message} (r retries)"))

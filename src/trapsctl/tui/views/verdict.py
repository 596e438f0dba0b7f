"""Block or allow a hash from a table (``b``/``a``) or a screen: ask, then send in a worker."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.widget import Widget

from trapsapi.errors import ApiError
from trapsctl.tui.messages import VerdictChanged
from trapsctl.tui.screens.confirm import ConfirmDialog

if TYPE_CHECKING:
    from trapsctl.tui.client import DashboardClient


def ask_verdict(widget: Widget, sha256: str | None, verdict: str) -> None:
    """Ask, then block (malware) or allow (benign) ``sha256`` in a worker of ``widget``
    (the answer comes back as VerdictChanged, posted to ``widget``)."""
    if not sha256:
        widget.notify("The selected row has no SHA-256.", severity="warning")
        return
    verb = "Block" if verdict == "malware" else "Allow"
    effect = (
        "Agents in prevention mode will refuse to run it."
        if verdict == "malware"
        else "It will run even where other verdicts would block it."
    )
    client: DashboardClient = widget.app.client  # type: ignore[attr-defined]

    def answered(yes: bool | None) -> None:
        if yes:
            send = partial(send_verdict, widget, client, sha256, verdict)
            widget.run_worker(send, thread=True, group="verdict")

    dialog = ConfirmDialog(f"{verb} this hash?", f"{sha256}\n\n{effect}", verb)
    widget.app.push_screen(dialog, answered)


def send_verdict(widget: Widget, client: DashboardClient, sha256: str, verdict: str) -> None:
    """In a thread worker: the verdict to the ESM; never raises."""
    try:
        result = client.set_verdict(sha256, verdict, "set in trapsctl dashboard")
    except ApiError as exc:
        widget.post_message(VerdictChanged(sha256, verdict, error=exc))
        return
    except Exception as exc:  # never take the dashboard down
        error = ApiError(f"unexpected {type(exc).__name__}: {exc}")
        widget.post_message(VerdictChanged(sha256, verdict, error=error))
        return
    widget.post_message(VerdictChanged(sha256, verdict, result=result))

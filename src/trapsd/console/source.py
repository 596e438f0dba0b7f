"""Where the console's data comes from: a callable ``(request) -> reply`` over the control socket.

A source may raise :class:`trapsapi.errors.TrapsError`; :class:`trapsd.control.DaemonNotRunning`
means the daemon is gone (the console shows a banner and keeps retrying).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Source = Callable[[dict[str, Any]], dict[str, Any]]
READ_TIMEOUT_S = 4.0
"""A read (status, events …) that takes longer means the daemon is stuck: say so, retry."""


def control_source(state_dir: Path, checkin_timeout_s: float) -> Source:
    """Requests to the daemon of ``state_dir``; check-ins may take up to ``checkin_timeout_s``."""
    from trapsd.control import call

    def source(request: dict[str, Any]) -> dict[str, Any]:
        timeout = checkin_timeout_s if request.get("cmd") == "checkin" else READ_TIMEOUT_S
        return call(state_dir, request, timeout)

    return source

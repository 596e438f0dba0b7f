"""``trapsd logs collect``: the log bundle of the server's ``retrieve_logs`` action, written
to a local file (cytool's ``log collect``).

With the daemon running, the daemon builds the bundle (its recent log lines, live status,
action history) and hands the bytes over the control socket, for root only: the CLI writes
the file, so the daemon never writes where a client tells it to. With the daemon down, the
CLI builds it from the state directory (saved status, no log lines).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from trapsapi.errors import ExitCode, TrapsError, UsageError
from trapsd.actions.logs import bundle, log_sections
from trapsd.config import AgentSettings

MAX_BYTES = 1 << 20  # as the retrieve_logs action's default
ROOT_ONLY = "logs collect: root only (the bundle holds the agent's settings and history)"


class NotRoot(TrapsError):
    exit_code = ExitCode.AUTH


def daemon_reply(
    status: dict[str, Any],
    settings: AgentSettings,
    actions: list[dict[str, Any]],
    lines: list[str],
    request: dict[str, Any],
) -> dict[str, Any]:
    """The control socket's ``logs-collect``: the bundle, base64, for a root peer only."""
    if request.get("peer_uid") != 0:
        return {"ok": False, "error": ROOT_ONLY, "exit_code": int(ExitCode.AUTH)}
    sections = log_sections(status, settings, actions, settings.state_dir)
    data, kept = bundle(sections, lines, MAX_BYTES)
    return {"ok": True, "content_b64": base64.b64encode(data).decode(), "log_lines": kept}


def _offline_bundle(settings: AgentSettings) -> tuple[bytes, int]:
    from trapsd.actions.store import ACTIONS_FILE, ActionStore
    from trapsd.status import gather

    state_dir = settings.state_dir
    if not state_dir.is_dir():
        raise TrapsError(f"{state_dir}: no agent state here")
    actions: list[dict[str, Any]] = []
    if (state_dir / ACTIONS_FILE).exists():
        store = ActionStore(state_dir)
        try:
            actions = [a.public() for a in store.history() + store.unfinished()]
        finally:
            store.close()
    return bundle(log_sections(gather(state_dir), settings, actions, state_dir), [], MAX_BYTES)


def default_name() -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"trapsd-logs-{socket.gethostname()}-{when}.json.gz"


def collect(settings: AgentSettings, output: Path | None, as_json: bool) -> int:
    """Write the bundle to ``output`` (new file, 0600) and say what was written."""
    if os.geteuid() != 0:
        raise NotRoot(ROOT_ONLY)
    from trapsd.control import DaemonNotRunning, call

    path = output or Path(default_name())
    if path.exists():
        raise UsageError(f"-O {path}: the file exists (nothing written)")
    try:
        reply = call(settings.state_dir, {"cmd": "logs-collect"}, 30)
    except DaemonNotRunning:
        data, lines = _offline_bundle(settings)
        running = False
    else:
        if not reply.get("ok"):
            raise TrapsError(f"logs collect: {reply.get('error')}")
        data, lines, running = base64.b64decode(reply["content_b64"]), reply["log_lines"], True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise UsageError(f"-O {path}: cannot create it ({exc.strerror})") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    summary = {
        "file": str(path),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "log_lines": lines,
        "daemon_running": running,
    }
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        source = "from the running daemon" if running else "from the state dir (daemon down)"
        sys.stdout.write(
            f"wrote {path}: {len(data)} bytes, sha256 {summary['sha256']}, "
            f"{lines} log lines {source}\n"
        )
    return ExitCode.OK

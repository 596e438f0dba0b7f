"""`trapsd status`: live from the daemon, or from the state files when it is down."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

import psutil

from trapsd.control import DaemonNotRunning, call
from trapsd.files import read_json
from trapsd.identity import load_identity
from trapsd.outbox import peek_depth
from trapsd.policy import load_policy

STATUS_FILE = "status.json"


def gather(state_dir: Path, timeout: float = 3.0) -> dict[str, Any]:
    try:
        reply = call(state_dir, {"cmd": "status"}, timeout)
        status: dict[str, Any] = reply["status"]
        status["running"] = True
        return status
    except DaemonNotRunning:
        pass
    status = read_json(state_dir / STATUS_FILE) or {}
    if not status:
        identity = load_identity(state_dir)  # NotEnrolled when there is nothing at all
        policy = load_policy(state_dir)
        status = {
            "agent_id": identity.agent_id,
            "servers": identity.servers,
            "server": identity.servers[0],
            "policy_version": policy.version if policy else None,
            "modules": [],
        }
    pid = status.get("pid")
    status["running"] = False
    if isinstance(pid, int) and psutil.pid_exists(pid) and pid != os.getpid():
        status["note"] = f"pid {pid} exists but does not answer on the control socket"
    peek = peek_depth(state_dir)
    if peek is not None:
        status["outbox_depth"], status["events_dropped"] = peek
    return status


def _marks(stream: TextIO) -> tuple[str, str]:
    try:
        "✓✗".encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return "+", "x"
    return "✓", "✗"


def render(status: dict[str, Any], output: str, stream: TextIO | None = None) -> None:
    stream = stream or sys.stdout
    if output == "json":
        stream.write(json.dumps(status, indent=2, sort_keys=True) + "\n")
        return
    ok, bad = _marks(stream)
    rows: list[tuple[str, str]] = [("Agent", f"{status.get('agent_id', '?')}")]
    if status.get("running"):
        rows.append(
            ("Daemon", f"running (pid {status.get('pid')}, since {status.get('started_at')})")
        )
    else:
        rows.append(
            ("Daemon", "not running" + (f" ({status['note']})" if status.get("note") else ""))
        )
    connected = status.get("connected")
    state = "connected" if connected else "not connected" if status.get("last_checkin") else ""
    rows.append(("Server", f"{status.get('server', '?')}  {state}".rstrip()))
    last = status.get("last_checkin")
    if last:
        outcome = "ok" if last.get("ok") else f"failed: {last.get('error')}"
        rows.append(("Last check-in", f"{last.get('time')}  {outcome}"))
        if not last.get("ok") and status.get("last_success"):
            rows.append(("Last success", str(status["last_success"])))
    else:
        rows.append(("Last check-in", "never"))
    version = status.get("policy_version")
    rows.append(("Policy", "none yet (defaults)" if version is None else f"version {version}"))
    rows.append(
        (
            "Outbox",
            f"{status.get('outbox_depth', 0)} events pending, "
            f"{status.get('events_dropped', 0)} dropped",
        )
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        stream.write(f"{name:<{width}}  {value}\n")
    modules = status.get("modules") or []
    stream.write("Modules" + ("" if modules else "  (unknown until the daemon runs)") + "\n")
    for module in modules:
        mark = ok if module.get("healthy") else bad
        mode = module.get("mode") if module.get("enabled") else "disabled"
        stream.write(
            f"  {mark} {module.get('name', '?'):<20} {mode:<12} {module.get('mechanism', '?'):<15}"
            f" {module.get('detail', '')}\n"
        )

"""The agent's own record of policy changes: one JSON line per applied or refused policy.

Append-only, in the state directory (``policy-changes.jsonl``), bounded: when it grows past
``MAX_BYTES`` the newest ``KEEP`` entries are kept. ``trapsd policy-log`` and the control
socket (``{"cmd": "policy-log"}``) read it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trapsd.files import write_private

LOG_FILE = "policy-changes.jsonl"
MAX_BYTES = 256 * 1024
KEEP = 200
log = logging.getLogger(__name__)
_lock = threading.Lock()


def log_path(state_dir: Path) -> Path:
    return state_dir / LOG_FILE


def changed_sections(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Which parts of the wire policy differ: module names, agent, forensics, hashes."""
    old = old or {}
    names: list[str] = []
    old_modules, new_modules = old.get("modules") or {}, new.get("modules") or {}
    for name in sorted(set(old_modules) | set(new_modules)):
        if old_modules.get(name) != new_modules.get(name):
            names.append(name)
    for key in ("agent", "forensics", "heartbeat_interval_s", "blocked_hashes", "allowed_hashes"):
        if old.get(key) != new.get(key):
            names.append(key)
    return names


def record(state_dir: Path, entry: Mapping[str, Any]) -> None:
    """Append one entry (time added); a full disk loses the entry, never the policy."""
    line = {"time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **entry}
    path = log_path(state_dir)
    with _lock:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, json.dumps(line, sort_keys=True).encode() + b"\n")
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > MAX_BYTES:
                kept = path.read_bytes().splitlines(keepends=True)[-KEEP:]
                write_private(path, b"".join(kept))
        except OSError as exc:
            log.warning("cannot record the policy change in %s: %s", path, exc)


def read(state_dir: Path, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, newest last; unreadable lines are skipped."""
    try:
        lines = log_path(state_dir).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    entries = []
    for raw in lines[-limit:] if limit > 0 else []:
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            entries.append(value)
    return entries

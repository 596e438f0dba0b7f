"""Security events: the detection a sensor records, and the wire event built from it.

Sensors fill a :class:`Detection` (cheap: no name lookups, no I/O beyond /proc of the
process); the writer thread turns it into a :class:`trapsapi.wire.SecurityEvent`, resolving the
user name (NSS may hit the network, so never on the fanotify answering thread).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import pwd
import time
import uuid
from typing import Any

from trapsapi.enums import Severity
from trapsapi.wire import SecurityEvent

LONG_TEXT = 8192
SHORT_TEXT = 255
CMDLINE_READ = 16384


@dataclasses.dataclass(slots=True)
class Detection:
    action: str
    process_path: str
    sha256: str | None
    pid: int | None
    module: str = "malware"
    severity: str = Severity.HIGH
    ppid: int | None = None
    parent_path: str | None = None
    uid: int | None = None
    cmdline: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    time: float = dataclasses.field(default_factory=time.time)


@dataclasses.dataclass(slots=True)
class ProcInfo:
    ppid: int | None = None
    uid: int | None = None
    cmdline: str = ""
    parent_path: str | None = None


def read_proc(pid: int) -> ProcInfo:
    """Best-effort details of a live process from /proc (it may be gone: fields stay empty).

    Only status, cmdline and the parent's exe link are read: none of them waits on a process
    that is blocked in execve, so this is safe while a fanotify permission event is held.
    """
    info = ProcInfo()
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"PPid:"):
                    info.ppid = int(line.split()[1])
                elif line.startswith(b"Uid:"):
                    info.uid = int(line.split()[1])
                    break
    except (OSError, ValueError, IndexError):
        return info
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(CMDLINE_READ)
        info.cmdline = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        pass
    if info.ppid:
        try:
            info.parent_path = os.readlink(f"/proc/{info.ppid}/exe")
        except OSError:
            pass
    return info


def _user(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name[:SHORT_TEXT]
    except KeyError:
        return str(uid)


def _clip(text: str | None, limit: int) -> str | None:
    return None if text is None else text[:limit]


def build_event(detection: Detection) -> SecurityEvent:
    """The wire event, with every text clipped to the server's limits."""
    return {
        "id": detection.id,
        "time": dt.datetime.fromtimestamp(detection.time, dt.UTC).isoformat(),
        "module": detection.module,
        "severity": detection.severity,
        "action": detection.action,
        "process_path": detection.process_path[:LONG_TEXT],
        "sha256": detection.sha256,
        "pid": detection.pid,
        "ppid": detection.ppid,
        "parent_path": _clip(detection.parent_path, LONG_TEXT),
        "user": _user(detection.uid),
        "uid": detection.uid,
        "cmdline": detection.cmdline[:LONG_TEXT],
        "details": detection.details,
    }

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
from collections.abc import Iterator
from typing import Any

from trapsapi.enums import Severity
from trapsapi.wire import SecurityEvent
from trapsd.exec_rules import MALWARE, Finding, action_for, reported

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


def _ppid(pid: int) -> int | None:
    """The parent pid from /proc/PID/stat (a third of the cost of parsing status)."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = os.read(fd, 1024)
        finally:
            os.close(fd)
        return int(data.rpartition(b")")[2].split(None, 2)[1])  # "(comm) state ppid"
    except (OSError, ValueError, IndexError):
        return None


def parent_images(pid: int, before_exec: bool = True) -> Iterator[tuple[str, str]]:
    """(image, how found) of who starts the program ``pid`` is exec'ing, nearest first.

    Before the exec completes (a fanotify permission event) /proc/PID/exe is still the old
    image: the program that forked and is now exec'ing. The parent process's image follows
    (it catches a fork that execs an unlisted helper, such as env, which then execs the child).
    After the exec (the kill sensors) only the parent process's image means anything.
    """
    if before_exec:
        try:
            yield os.readlink(f"/proc/{pid}/exe"), "image"
        except OSError:
            pass
    ppid = _ppid(pid)
    if ppid:
        try:
            yield os.readlink(f"/proc/{ppid}/exe"), "parent"
        except OSError:
            pass


SEVERITY = {MALWARE: Severity.HIGH}


def _starter(pid: int, before_exec: bool) -> str | None:
    """The image of the program that started this one (see :func:`parent_images`)."""
    return next((image for image, _ in parent_images(pid, before_exec)), None)


def exec_detection(
    findings: list[Finding],
    path: str,
    digest: bytes | None,
    pid: int,
    mechanism: str,
    policy_version: int | None,
    can_block: bool,
) -> list[Detection]:
    """One detection per reported finding about one execution (the /proc reads are shared).

    When a module stops the execution, the notification-only findings are not reported.
    """
    info = read_proc(pid)
    detections: list[Detection] = []
    for finding in reported(findings):
        details: dict[str, Any] = {"mechanism": mechanism, "policy_version": policy_version}
        if finding.module != MALWARE:
            details["rule"] = finding.rule
            details["parent_image"] = finding.parent_image or _starter(pid, can_block)
        detections.append(
            Detection(
                action=action_for(finding.decision, can_block),
                process_path=path,
                sha256=None if digest is None else digest.hex(),
                pid=pid,
                module=finding.module,
                severity=SEVERITY.get(finding.module, Severity.MEDIUM),
                ppid=info.ppid,
                parent_path=info.parent_path,
                uid=info.uid,
                cmdline=info.cmdline,
                details=details,
            )
        )
    return detections


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

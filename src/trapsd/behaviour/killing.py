"""SIGKILL through pidfds, for the behaviour modules' prevention: a pid is opened before it
is signalled, so a pid recycled meanwhile is never hit."""

from __future__ import annotations

import os
import signal

from trapsapi.enums import EventAction


def kill_all(pids: list[int]) -> tuple[EventAction, str]:
    """Kill ``pids`` (the process first, then its descendants); the outcome is the
    process's: (killed, "") or (notified, why not). Its descendants are killed even when it
    exited already."""
    opened: list[tuple[int, int]] = []
    for target in pids:
        try:
            opened.append((target, os.pidfd_open(target)))
        except OSError:
            continue
    error = "" if opened and opened[0][0] == pids[0] else "exited before the kill"
    for target, fd in opened:
        try:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        except ProcessLookupError:
            if target == pids[0]:
                error = "exited before the kill"
        except PermissionError:
            if target == pids[0]:
                error = "permission denied"
        finally:
            os.close(fd)
    return (EventAction.NOTIFIED, error) if error else (EventAction.KILLED, "")

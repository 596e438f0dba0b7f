"""fanotify from Python: the system calls through ctypes, the constants and record layouts."""

from __future__ import annotations

import ctypes
import os
import struct

FAN_CLOEXEC = 0x01
FAN_NONBLOCK = 0x02
FAN_CLASS_CONTENT = 0x04
FAN_UNLIMITED_QUEUE = 0x10
FAN_UNLIMITED_MARKS = 0x20
FAN_MARK_ADD = 0x01
FAN_MARK_IGNORED_MASK = 0x20
FAN_MARK_FLUSH = 0x80
FAN_MARK_MOUNT = 0x10
FAN_MARK_FILESYSTEM = 0x100
FAN_OPEN_EXEC_PERM = 0x40000
FAN_ALLOW = 0x01
FAN_DENY = 0x02
FANOTIFY_METADATA_VERSION = 3
AT_FDCWD = -100
METADATA = struct.Struct("=IBBHQii")
RESPONSE = struct.Struct("=iI")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_uint64,
    ctypes.c_int,
    ctypes.c_char_p,
]
_libc.fanotify_mark.restype = ctypes.c_int


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def fanotify_init(flags: int, event_flags: int) -> int:
    return _check(_libc.fanotify_init(flags, event_flags))


def fanotify_mark(fd: int, flags: int, mask: int, dirfd: int, path: str | None) -> None:
    _check(_libc.fanotify_mark(fd, flags, mask, dirfd, None if path is None else path.encode()))

"""The netlink proc connector's wire format and socket, shared by the exec kill sensor and the
behaviour engine's process tree.

Each subscriber asks the kernel only for the events it uses, twice over:

- Linux ≥ 6.6 filters by event type per socket when the subscription carries
  ``struct proc_input {u32 mcast_op; u32 event_type}``; older kernels ignore an 8-byte
  subscription, so they get the 4-byte one (every event).
- A classic BPF socket filter (any kernel) drops what is still unwanted before it is queued:
  other event types (COMM on every exec, GID, SID, ...) and the fork and exit events of
  threads, which outnumber processes on busy hosts. Without it (attaching refused) the
  readers skip those themselves.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

from trapsd.sensors.base import CAP_NET_ADMIN, SensorUnavailable, has_capability

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_NONE = 0x0
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_UID = 0x4
PROC_EVENT_PTRACE = 0x100
PROC_EVENT_COMM = 0x200
PROC_EVENT_EXIT = 0x80000000
NLMSG_DONE = 3
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
RCVBUF = 4 * 1024 * 1024
EVENT_TYPES_SINCE = (6, 6)
"""The first Linux release that filters by ``proc_input.event_type``."""

_NLMSG = struct.Struct("=IHHII")
_CNMSG = struct.Struct("=IIIIHH")
WHAT_AT = _NLMSG.size + _CNMSG.size  # proc_event.what; then cpu (u32), timestamp (u64)
DATA_AT = WHAT_AT + 16  # proc_event.event_data
MESSAGE = struct.Struct("=I32xI4xQIIII")
"""One message in one unpack: nlmsg_len, what, timestamp (ns, CLOCK_MONOTONIC), the first
four u32 words of event_data."""
# event_data words: fork (parent pid, parent tgid, child pid, child tgid), exec and exit
# (pid, tgid, ...), uid (pid, tgid, ruid, euid), ptrace (pid, tgid, tracer pid, tracer tgid),
# none, the subscription's ack (error, ...).
Message = tuple[int, int, int, int, int, int, int]
"""nlmsg_len, what, timestamp_ns and the first four u32 words of the event's data (see
:data:`MESSAGE`)."""


def parse_events(data: bytes | bytearray, size: int | None = None) -> list[Message]:
    """The messages in the first ``size`` bytes of ``data`` (the kernel sends whole
    ``struct proc_event``s; a shorter message ends the list)."""
    size = len(data) if size is None else size
    out: list[Message] = []
    offset = 0
    while offset + MESSAGE.size <= size:
        message = MESSAGE.unpack_from(data, offset)
        if message[0] < MESSAGE.size:
            break
        out.append(message)
        offset += (message[0] + 3) & ~3
    return out


def event_types_filtered(release: str | None = None) -> bool:
    """Whether this kernel (``uname -r``) honours a subscription's event types."""
    found = re.match(r"(\d+)\.(\d+)", os.uname().release if release is None else release)
    return found is not None and (int(found[1]), int(found[2])) >= EVENT_TYPES_SINCE


def subscribe_message(op_code: int = PROC_CN_MCAST_LISTEN, events: int | None = None) -> bytes:
    """The subscription (``events`` None: every event, the 4-byte form older kernels know)."""
    op = struct.pack("=I", op_code) if events is None else struct.pack("=II", op_code, events)
    cn = _CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
    return _NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


# Classic BPF: A is the accumulator, X the index register, M[] scratch memory.
_LD_ABS, _LDX_MEM, _ST, _JEQ_K, _JEQ_X, _RET_K = 0x20, 0x61, 0x02, 0x15, 0x1D, 0x06
_INSN = struct.Struct("=HBBI")
Insn = tuple[int, str | int, str | int, int]
"""(code, jump-if-true label or offset, jump-if-false label or offset, k)."""


def _wire(value: int) -> int:
    """``value`` as a BPF absolute load sees a native u32 field: network byte order."""
    return int.from_bytes(struct.pack("=I", value), "big")


def socket_filter(events: int) -> bytes:
    """The BPF program (``struct sock_filter[]``) passing the subscription's ack, ``events``
    of processes, and no thread's fork or exit."""
    code: list[Insn] = [(_LD_ABS, 0, 0, WHAT_AT)]
    for kind in (PROC_EVENT_NONE, PROC_EVENT_EXEC, PROC_EVENT_UID, PROC_EVENT_PTRACE):
        if kind == PROC_EVENT_NONE or events & kind:
            code.append((_JEQ_K, "pass", 0, _wire(kind)))
    if events & PROC_EVENT_FORK:
        code.append((_JEQ_K, "fork", 0, _wire(PROC_EVENT_FORK)))
    if events & PROC_EVENT_EXIT:
        code.append((_JEQ_K, "exit", 0, _wire(PROC_EVENT_EXIT)))
    code.append((_RET_K, 0, 0, 0))  # drop
    labels: dict[str, int] = {}
    checks = [("fork", 8, 12)] if events & PROC_EVENT_FORK else []
    checks += [("exit", 0, 4)] if events & PROC_EVENT_EXIT else []
    for label, first, second in checks:  # a process's: child pid == child tgid, pid == tgid
        labels[label] = len(code)
        code += [
            (_LD_ABS, 0, 0, DATA_AT + first),
            (_ST, 0, 0, 0),
            (_LD_ABS, 0, 0, DATA_AT + second),
            (_LDX_MEM, 0, 0, 0),
            (_JEQ_X, "pass", 0, 0),  # equal in any byte order
            (_RET_K, 0, 0, 0),
        ]
    labels["pass"] = len(code)
    code.append((_RET_K, 0, 0, 0xFFFFFFFF))

    def offset(at: int, target: str | int) -> int:
        return target if isinstance(target, int) else labels[target] - at - 1

    return b"".join(
        _INSN.pack(op, offset(at, jt), offset(at, jf), k) for at, (op, jt, jf, k) in enumerate(code)
    )


def attach_filter(sock: socket.socket, program: bytes) -> bool:
    """SO_ATTACH_FILTER ``program`` to ``sock``; False when the kernel refuses it."""
    insns = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", len(program) // _INSN.size, ctypes.addressof(insns))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


T = TypeVar("T")


def open_connector(
    events: int, check_ack: Callable[[socket.socket], T]
) -> tuple[socket.socket, T, str]:
    """A bound proc-connector socket subscribed to ``events``, what ``check_ack`` made of the
    kernel's answer, and how the kernel filters for it ("event types+bpf", "bpf", "none");
    SensorUnavailable (socket closed) when that fails."""
    if not has_capability(CAP_NET_ADMIN):
        raise SensorUnavailable("no CAP_NET_ADMIN for the proc connector")
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as exc:
        raise SensorUnavailable(f"netlink connector unavailable ({exc.strerror})") from None
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        filtered = ["bpf"] if attach_filter(sock, socket_filter(events)) else []
        sock.bind((0, CN_IDX_PROC))
        by_type = event_types_filtered()
        sock.send(subscribe_message(PROC_CN_MCAST_LISTEN, events if by_type else None))
        how = "+".join((["event types"] if by_type else []) + filtered) or "none"
        return sock, check_ack(sock), how
    except (OSError, SensorUnavailable) as exc:
        sock.close()
        if isinstance(exc, SensorUnavailable):
            raise
        raise SensorUnavailable(f"proc connector refused ({exc.strerror})") from None


def unsubscribe(sock: socket.socket) -> None:
    """Tell the kernel this socket listens no more (best effort), and close it."""
    try:
        sock.send(subscribe_message(PROC_CN_MCAST_IGNORE))
    except OSError:
        pass
    sock.close()

"""Exec notifications from the netlink process connector (needs CAP_NET_ADMIN, initial pid ns).

Events arrive ~50 µs after the exec, without polling; the process already runs, so a malware
verdict means SIGKILL, not prevention. Netlink multicast can lose messages (ENOBUFS): every
running process is judged again then.
"""

from __future__ import annotations

import errno
import select
import socket
import struct
from collections.abc import Callable
from typing import TypeVar

from trapsd.sensors.base import CAP_NET_ADMIN, SensorUnavailable, has_capability
from trapsd.sensors.killer import KillSensor

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_CN_MCAST_IGNORE = 2
PROC_EVENT_NONE = 0
PROC_EVENT_EXEC = 0x2
NLMSG_DONE = 3
_NLMSG = struct.Struct("=IHHII")
_CNMSG = struct.Struct("=IIIIHH")
_EVENT = struct.Struct("=IIQ")
_EXEC = struct.Struct("=II")
RCVBUF = 4 * 1024 * 1024


def _subscribe_message(op_code: int = PROC_CN_MCAST_LISTEN) -> bytes:
    op = struct.pack("=I", op_code)
    cn = _CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
    return _NLMSG.pack(_NLMSG.size + len(cn), NLMSG_DONE, 0, 0, 0) + cn


def parse(data: bytes) -> tuple[list[int], int | None]:
    """(pids that exec'd, the error of a subscription ack if one is in the data)."""
    pids: list[int] = []
    ack_error: int | None = None
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length = _NLMSG.unpack_from(data, offset)[0]
        if length < _NLMSG.size:
            break
        body = offset + _NLMSG.size + _CNMSG.size
        if body + _EVENT.size <= offset + length:
            what = _EVENT.unpack_from(data, body)[0]
            payload = body + _EVENT.size
            if what == PROC_EVENT_EXEC:
                pids.append(_EXEC.unpack_from(data, payload)[1])  # the tgid
            elif what == PROC_EVENT_NONE:
                ack_error = struct.unpack_from("=I", data, payload)[0]
        offset += (length + 3) & ~3
    return pids, ack_error


T = TypeVar("T")


def open_connector(
    subscribe: bytes, check_ack: Callable[[socket.socket], T]
) -> tuple[socket.socket, T]:
    """A bound proc-connector socket, subscribed with ``subscribe``, and what ``check_ack``
    made of the kernel's answer; SensorUnavailable (socket closed) when that fails."""
    if not has_capability(CAP_NET_ADMIN):
        raise SensorUnavailable("no CAP_NET_ADMIN for the proc connector")
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
    except OSError as exc:
        raise SensorUnavailable(f"netlink connector unavailable ({exc.strerror})") from None
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)  # SO_RCVBUFFORCE
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        sock.bind((0, CN_IDX_PROC))
        sock.send(subscribe)
        return sock, check_ack(sock)
    except (OSError, SensorUnavailable) as exc:
        sock.close()
        if isinstance(exc, SensorUnavailable):
            raise
        raise SensorUnavailable(f"proc connector refused ({exc.strerror})") from None


class ProcConnectorSensor(KillSensor):
    mechanism = "proc-connector"

    def start(self) -> None:
        self._sock, _ = open_connector(_subscribe_message(), self._check_ack)
        super().start()

    def _check_ack(self, sock: socket.socket) -> None:
        """The kernel acks the subscription (PROC_EVENT_NONE); a non-zero error means refused."""
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        for _ in range(50):
            if not poller.poll(100):
                return  # older kernels may not ack; exec events will tell
            _, error = parse(sock.recv(65536))
            if error is not None:
                if error:
                    raise SensorUnavailable(
                        f"proc connector refused ({errno.errorcode.get(error)})"
                    )
                return

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping.is_set():
                if self.rescan_wanted:
                    self.rescan()
                for fd, _ in poller.poll():  # stop() and set_policy() write the wake pipe
                    if fd == self._wake_r:
                        self.drain_wake()
                        continue
                    try:
                        data = self._sock.recv(65536)
                    except OSError as exc:
                        if exc.errno == errno.ENOBUFS:  # lost events: catch up
                            self.rescan_wanted = True
                            continue
                        raise
                    for pid in parse(data)[0]:
                        self.inspect(pid)
        finally:
            try:
                self._sock.send(_subscribe_message(PROC_CN_MCAST_IGNORE))
            except OSError:
                pass
            self._sock.close()

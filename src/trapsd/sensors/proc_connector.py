"""Exec notifications from the netlink process connector (needs CAP_NET_ADMIN, initial pid ns).

Events arrive ~50 µs after the exec, without polling; the process already runs, so a malware
verdict means SIGKILL, not prevention. Netlink multicast can lose messages (ENOBUFS): every
running process is judged again then.
"""

from __future__ import annotations

import errno
import select
import socket

from trapsd.sensors.base import SensorUnavailable
from trapsd.sensors.cn_proc import (
    PROC_EVENT_EXEC,
    PROC_EVENT_NONE,
    open_connector,
    parse_events,
    unsubscribe,
)
from trapsd.sensors.killer import KillSensor


def parse(data: bytes) -> tuple[list[int], int | None]:
    """(pids that exec'd, the error of a subscription ack if one is in the data)."""
    pids: list[int] = []
    ack_error: int | None = None
    for _, what, _, first, tgid, _, _ in parse_events(data):
        if what == PROC_EVENT_EXEC:
            pids.append(tgid)
        elif what == PROC_EVENT_NONE:
            ack_error = first
    return pids, ack_error


class ProcConnectorSensor(KillSensor):
    mechanism = "proc-connector"
    kernel_filter = "none"

    def start(self) -> None:
        self._sock, _, self.kernel_filter = open_connector(PROC_EVENT_EXEC, self._check_ack)
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
            unsubscribe(self._sock)

"""The local control socket: one JSON line in, one JSON line out.

``state_dir/control.sock`` is 0600 (root only) or 0660 with ``control_socket_group``.
Commands: ``{"cmd": "status"}`` and ``{"cmd": "checkin"}``.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trapsapi.errors import TrapsError
from trapsd.wakeup import WakePipe

SOCKET_FILE = "control.sock"
MAX_LINE = 64 * 1024
MAX_REPLY = 32 * 1024 * 1024  # a forensics bundle can be large; requests stay small
SUN_PATH_MAX = 107
_UCRED = struct.Struct("=iII")  # pid, uid, gid
log = logging.getLogger(__name__)
Handler = Callable[[dict[str, Any]], dict[str, Any]]


class DaemonNotRunning(TrapsError):
    pass


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_FILE


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """A bindable address for ``path``, even beyond the 107-byte sun_path limit.

    Long paths (deep test directories) go through /proc/self/fd/N of the directory.
    """
    if len(os.fsencode(path)) <= SUN_PATH_MAX:
        yield str(path)
        return
    dir_fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{dir_fd}/{path.name}"
    finally:
        os.close(dir_fd)


class ControlServer:
    def __init__(self, path: Path, handler: Handler, group: str | None = None) -> None:
        self.path = path
        self.handler = handler
        self.group = group
        self._sock: socket.socket | None = None
        self._stopping = threading.Event()
        self._wake = WakePipe()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)

    def start(self) -> None:
        gid = None
        if self.group:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                raise TrapsError(f"control_socket_group: no group {self.group!r}") from None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # stale: the state-dir lock proves no other daemon owns it
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            with _address(self.path) as address:
                sock.bind(address)
            os.chmod(self.path, 0o600 if gid is None else 0o660)
            if gid is not None:
                os.chown(self.path, -1, gid)
                os.chown(self.path.parent, -1, gid)
                os.chmod(self.path.parent, 0o710)
            sock.listen(16)
        except OSError as exc:
            sock.close()
            raise TrapsError(f"{self.path}: cannot create the control socket ({exc})") from None
        self._sock = sock
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.wake()
        if self._thread.is_alive():
            self._thread.join(2)
        if self._sock is not None:
            self._sock.close()
        if not self._thread.is_alive():
            self._wake.close()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._sock is not None
        poller = select.poll()
        poller.register(self._sock, select.POLLIN)
        poller.register(self._wake, select.POLLIN)
        while not self._stopping.is_set():
            if all(fd == self._wake.fileno() for fd, _ in poller.poll()):
                continue  # woken to stop
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                request = _read_line(conn)
                request["peer_uid"] = _peer_uid(conn)  # the kernel's word, not the client's
            except (OSError, ValueError) as exc:
                reply: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                try:
                    reply = self.handler(request)
                except Exception as exc:  # a bad request must not kill the daemon
                    log.exception("control: %s failed", request.get("cmd"))
                    reply = {"ok": False, "error": str(exc) or type(exc).__name__}
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.sendall(json.dumps(reply).encode() + b"\n")


def _peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end (SO_PEERCRED): root-only commands check it."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return int(_UCRED.unpack(creds)[1])


def _read_line(conn: socket.socket, limit: int = MAX_LINE) -> dict[str, Any]:
    data = bytearray()
    while True:
        chunk = conn.recv(65536 if limit > MAX_LINE else 4096)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise ValueError("line too long")
        if b"\n" in chunk:
            break
    value = json.loads(bytes(data).split(b"\n", 1)[0] or b"null")
    if not isinstance(value, dict):
        raise ValueError("expected a JSON object")
    return value


def call(state_dir: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the daemon of ``state_dir`` and return its reply."""
    path = socket_path(state_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        with _address(path) as address:
            sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise DaemonNotRunning(f"trapsd is not running (no daemon on {path})") from None
    except PermissionError:
        sock.close()
        raise TrapsError(f"{path}: permission denied (root or the control group only)") from None
    except OSError as exc:
        sock.close()
        raise DaemonNotRunning(f"trapsd is not running ({path}: {exc.strerror})") from None
    with sock:
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            return _read_line(sock, MAX_REPLY)
        except TimeoutError:
            raise TrapsError(f"trapsd did not answer within {timeout:g} s") from None
        except (OSError, ValueError) as exc:
            raise TrapsError(f"trapsd control socket: {exc}") from None

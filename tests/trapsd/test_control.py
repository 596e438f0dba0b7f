from __future__ import annotations

import grp
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from trapsapi.errors import TrapsError
from trapsd.control import ControlServer, DaemonNotRunning, call, socket_path


def test_one_json_line_each_way_even_on_a_very_long_path(tmp_path: Path) -> None:
    state = tmp_path / ("d" * 60) / ("e" * 60)
    state.mkdir(parents=True)
    assert len(str(socket_path(state))) > 108  # beyond sun_path: bound via /proc/self/fd
    seen: list[dict[str, Any]] = []

    def handler(request: dict[str, Any]) -> dict[str, Any]:
        seen.append(request)
        if request["cmd"] == "boom":
            raise RuntimeError("handler failed")
        return {"ok": True, "echo": request["cmd"]}

    server = ControlServer(socket_path(state), handler)
    server.start()
    try:
        assert socket_path(state).stat().st_mode & 0o777 == 0o600
        assert call(state, {"cmd": "status"}, 5) == {"ok": True, "echo": "status"}
        assert call(state, {"cmd": "boom"}, 5) == {"ok": False, "error": "handler failed"}
        dir_fd = os.open(state, os.O_PATH)
        try:
            with socket.socket(socket.AF_UNIX) as raw:  # garbage in: an error reply, no crash
                raw.connect(f"/proc/self/fd/{dir_fd}/control.sock")
                raw.sendall(b"[1, 2]\n")
                assert json.loads(raw.makefile().readline())["ok"] is False
        finally:
            os.close(dir_fd)
        assert call(state, {"cmd": "status"}, 5)["ok"]
    finally:
        server.stop()
    assert not socket_path(state).exists()
    with pytest.raises(DaemonNotRunning):
        call(state, {"cmd": "status"}, 1)


def test_a_silent_daemon_times_out(tmp_path: Path) -> None:
    release = threading.Event()

    def stuck(request: dict[str, Any]) -> dict[str, Any]:
        release.wait(5)
        return {"ok": True}

    server = ControlServer(socket_path(tmp_path), stuck)
    server.start()
    try:
        with pytest.raises(TrapsError, match=r"did not answer within 0\.3 s"):
            call(tmp_path, {"cmd": "checkin"}, 0.3)
    finally:
        release.set()
        server.stop()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_a_control_group_may_use_the_socket(tmp_path: Path) -> None:
    try:
        group = grp.getgrgid(65534).gr_name
    except KeyError:
        pytest.skip("no group with gid 65534 on this host")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    server = ControlServer(socket_path(state), lambda request: {"ok": True}, group)
    server.start()
    try:
        sock = socket_path(state).stat()
        assert (sock.st_mode & 0o777, sock.st_gid) == (0o660, 65534)
        assert (state.stat().st_mode & 0o777, state.stat().st_gid) == (0o710, 65534)
    finally:
        server.stop()

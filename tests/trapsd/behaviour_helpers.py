"""Real behaviour-module attacks for the root tests: small C programs built with gcc in tmp."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

from agent_helpers import BEHAVIOUR_OFF, Agents, free_url, trapsd, wait_for

from trapsd.identity import Identity, save_identity
from trapsd.policy import save_policy

DUMMY_C = r"""
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "rwx")) {
        char *p = mmap(0, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("mmap"); return 1; }
        p[0] = (char)0xc3;
    }
    if (argc > 1 && !strcmp(argv[1], "setuid") && setuid(0) != 0) { perror("setuid"); return 1; }
    printf("ready\n");
    fflush(stdout);
    for (;;) pause();
}
"""
PRELOAD_C = "int traps_test_preloaded = 1;\n"
TRACER_PY = """
import ctypes, sys, time
libc = ctypes.CDLL(None, use_errno=True)
request = 0x4206 if sys.argv[2] == "seize" else 16  # PTRACE_SEIZE / PTRACE_ATTACH
if libc.ptrace(request, int(sys.argv[1]), None, None) != 0:
    print("ptrace failed", ctypes.get_errno(), flush=True)
    sys.exit(3)
print("attached", flush=True)
time.sleep(30)
"""


def build(directory: Path) -> dict[str, Path]:
    """The dummy (pause, rwx, setuid modes) and a preload library, compiled here."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dummy.c").write_text(DUMMY_C)
    (directory / "preload.c").write_text(PRELOAD_C)
    gcc = shutil.which("gcc") or "gcc"
    dummy, lib = directory / "dummy", directory / "libtrapstest.so"
    subprocess.run([gcc, "-O1", "-o", dummy, directory / "dummy.c"], check=True, timeout=60)
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-o", lib, directory / "preload.c"], check=True, timeout=60
    )
    return {"dummy": dummy, "lib": lib}


def named_copy(source: Path, directory: Path, prefix: str) -> Path:
    """A copy with a unique name, so a name-based policy matches this test's process only."""
    target = directory / f"{prefix}-{uuid.uuid4().hex[:8]}"
    shutil.copy(source, target)
    target.chmod(0o755)
    return target


def start_agent(
    agents: Agents,
    state: Path,
    modules: dict[str, Any],
    env: dict[str, str] | None = None,
    shipped: bool = False,
    blocked: list[str] | None = None,
) -> int:
    """A real ``trapsd run`` with the exec modules off and only ``modules`` of the behaviour
    modules on (the others explicitly off, unless ``shipped``: their shipped defaults);
    returns the daemon's pid."""
    save_identity(state, Identity("agent-behaviour", "secret", [free_url()]))
    wire = {
        "version": 7,
        "heartbeat_interval_s": 3600,
        "modules": {
            "malware": {"enabled": False},
            "restrictions": {"enabled": False},
            "child_process": {"enabled": False},
            **({} if shipped else BEHAVIOUR_OFF),
            **modules,
        },
        "blocked_hashes": blocked or [],
        "allowed_hashes": [],
    }
    save_policy(state, wire)
    saved = dict(os.environ)
    # a short repeat window: two attacks by the same program each show up (as a summary)
    os.environ.update(
        {
            "TRAPSD_BEHAVIOUR_SCAN_INTERVAL_S": "1",
            "TRAPSD_EVENT_REPEAT_WINDOW_S": "0.5",
            **(env or {}),
        }
    )
    try:
        process = agents.start(state)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    pid = agents.pid(state, process)
    assert pid
    return pid


def cli_json(*args: object) -> dict[str, Any]:
    result = trapsd(*args, "-o", "json", timeout=30)
    assert result.returncode == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def events(state: Path) -> list[dict[str, Any]]:
    return list(cli_json("events", "--state-dir", state)["events"])


def wait_event(state: Path, module: str, pid: int, timeout: float = 15) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((e for e in events(state) if e["module"] == module and e["pid"] == pid), None)

    return wait_for(found, timeout, 0.2)


def module_state(state: Path, name: str) -> dict[str, Any]:
    modules = cli_json("status", "--state-dir", state)["modules"]
    return dict(next(m for m in modules if m["name"] == name))


def spawn(
    procs: list[subprocess.Popen[bytes]], *args: object, **kw: object
) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([str(a) for a in args], **kw)  # type: ignore[call-overload]
    procs.append(process)
    return process


def ready(process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() in (b"ready", b"attached"), process.args


def killed(process: subprocess.Popen[bytes], timeout: float = 15) -> bool:
    try:
        return process.wait(timeout) == -9
    except subprocess.TimeoutExpired:
        return False


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    return client, server

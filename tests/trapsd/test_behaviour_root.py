"""Behaviour modules against real attacks, with a real ``trapsd run`` (root).

Each attack is detected and, in prevention mode, stopped; the ordinary counterpart is left
alone. Agents run as subprocesses (stopped by the ``agents`` fixture) with the exec modules
off, so no fanotify listener runs; name-based lists point at this test's own copies.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import ROOT_ONLY, Agents, trapsd, wait_for
from behaviour_helpers import (
    TRACER_PY,
    cli_json,
    events,
    killed,
    module_state,
    named_copy,
    ready,
    spawn,
    start_agent,
    tcp_pair,
    wait_event,
)

pytestmark = [ROOT_ONLY, pytest.mark.root, pytest.mark.timeout(90, method="thread")]
PREVENT = {"enabled": True, "mode": "prevention"}
NOTIFY = {"enabled": True, "mode": "notification"}


def test_reverse_shell_is_killed_with_its_tree_and_leaves_a_bundle(
    agents: Agents, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "agent"
    start_agent(agents, state, {"reverse_shell": PREVENT})
    client, server = tcp_pair()
    env = {**os.environ, "TRAPS_TEST_API_TOKEN": "hunter2", "TRAPS_TEST_PLAIN": "visible"}
    peer = "{}:{}".format(*client.getpeername())
    with client, server:
        shell = spawn(procs, "bash", "-i", stdin=client, stdout=client, stderr=client, env=env)
        assert killed(shell)
        event = wait_event(state, "reverse_shell", shell.pid)
    assert event["action"] == "killed"
    assert event["process_path"].endswith("/bash")
    assert "tcp 127.0.0.1:" in event["details"]["rule"]
    assert event["details"]["mechanism"] == "proc-connector"

    bundle_id = event["details"]["forensics_id"]
    listed = cli_json("forensics", "list", "--state-dir", state)["bundles"]
    assert bundle_id in [b["id"] for b in listed]
    bundle = cli_json("forensics", "show", bundle_id, "--state-dir", state)["bundle"]
    process = bundle["process"]
    assert process["environ"]["TRAPS_TEST_API_TOKEN"] == "<redacted>"
    assert process["environ"]["TRAPS_TEST_PLAIN"] == "visible"
    assert peer in [c["remote"] for c in process["connections"]]
    assert any(a["pid"] == os.getpid() for a in bundle["ancestors"])
    assert any(lib.endswith(".so.6") or "libc" in lib for lib in process["libraries"])
    assert len(bundle["hashes"][process["exe"]]) == 64
    table = trapsd("forensics", "show", "no-such-bundle-id", "--state-dir", state)
    assert table.returncode == 5 and table.stderr.count("\n") == 1


def test_a_shell_that_redirects_itself_to_a_socket_is_caught_when_it_runs_a_command(
    agents: Agents, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "agent"
    start_agent(agents, state, {"reverse_shell": PREVENT})
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    script = f"exec 0<>/dev/tcp/127.0.0.1/{port} 1>&0 2>&0; while :; do sleep 0.2; done"
    with listener:
        shell = spawn(procs, "bash", "-c", script)
        listener.accept()[0].close()
        assert killed(shell)
    assert wait_event(state, "reverse_shell", shell.pid)["action"] == "killed"


def test_ordinary_shells_are_left_alone(
    agents: Agents, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "agent"
    start_agent(agents, state, {"reverse_shell": PREVENT})
    left, right = socket.socketpair()  # what sshd gives a session without a pty
    with left, right:
        shell = spawn(procs, "bash", "-c", "sleep 2; echo done", stdin=left, stdout=left)
        assert shell.wait(20) == 0
    out = subprocess.run(["bash", "-c", "echo hi"], capture_output=True, timeout=20)
    assert out.stdout == b"hi\n"
    assert subprocess.run(["gcc", "--version"], capture_output=True, timeout=20).returncode == 0
    pip = [sys.executable, "-m", "pip", "--version"]
    assert subprocess.run(pip, capture_output=True, timeout=60).returncode == 0
    assert not [e for e in events(state) if e["module"] == "reverse_shell"]


def test_memfd_execution_is_killed(
    agents: Agents, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    if Path("/proc/sys/vm/memfd_noexec").read_text().strip() == "2":
        pytest.skip("vm.memfd_noexec=2 on this host: memfd execution is impossible anyway")
    state = tmp_path / "agent"
    start_agent(agents, state, {"fileless": PREVENT})
    code = (
        "import os; fd = os.memfd_create('traps-test', 0);"
        "os.write(fd, open('/bin/sleep', 'rb').read());"
        "os.execve(fd, ['sleep', '30'], {})"
    )
    memfd = spawn(procs, sys.executable, "-c", code)
    assert killed(memfd)
    event = wait_event(state, "fileless", memfd.pid)
    assert event["process_path"].startswith("/memfd:traps-test")
    assert event["details"]["rule"] == "memfd" and event["action"] == "killed"
    assert event["sha256"] and len(event["sha256"]) == 64


@pytest.mark.parametrize("mechanism", ["proc-connector", "fanotify"])
def test_a_blocked_memfd_is_reported_once(
    agents: Agents, tmp_path: Path, procs: list[subprocess.Popen[bytes]], mechanism: str
) -> None:
    """The kill sensor judges memfd images itself; fanotify never sees them: fileless does."""
    if Path("/proc/sys/vm/memfd_noexec").read_text().strip() == "2":
        pytest.skip("vm.memfd_noexec=2 on this host: memfd execution is impossible anyway")
    payload = tmp_path / "payload"
    payload.write_bytes(Path("/bin/sleep").read_bytes() + os.urandom(16))
    sha256 = hashlib.sha256(payload.read_bytes()).hexdigest()
    state = tmp_path / "agent"
    modules = {"fileless": PREVENT, "malware": {"enabled": True, "mode": "prevention"}}
    env = {"TRAPSD_MALWARE_MECHANISM": mechanism}
    start_agent(agents, state, modules, env, blocked=[sha256])
    code = (
        "import os, sys; fd = os.memfd_create('traps-blocked', 0);"
        "os.write(fd, open(sys.argv[1], 'rb').read());"
        "os.execve(fd, ['sleep', '30'], {})"
    )
    memfd = spawn(procs, sys.executable, "-c", code, payload)
    assert killed(memfd)
    owner = "malware" if mechanism == "proc-connector" else "fileless"
    event = wait_event(state, owner, memfd.pid)
    assert (event["sha256"], event["action"]) == (sha256, "killed")
    time.sleep(2)  # the other module had its chance
    found = [e for e in events(state) if e["pid"] == memfd.pid]
    assert [e["module"] for e in found] == [owner], found


def test_a_deleted_binary_is_reported_in_notification_mode(
    agents: Agents, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "agent"
    start_agent(agents, state, {"fileless": NOTIFY})
    binary = named_copy(Path("/bin/sleep"), tmp_path, "gone")
    code = f"import os; fd = os.open({str(binary)!r}, os.O_RDONLY); os.unlink({str(binary)!r});"
    code += "os.execve(fd, ['sleep', '3'], {})"
    process = spawn(procs, sys.executable, "-c", code)
    event = wait_event(state, "fileless", process.pid)
    assert (event["action"], event["details"]["rule"]) == ("notified", "deleted binary")
    assert process.wait(20) == 0  # notification: it ran to the end


def test_ld_preload_from_tmp_is_killed_and_system_preloads_are_not(
    agents: Agents, tmp_path: Path, built: dict[str, Path], procs: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "agent"
    start_agent(agents, state, {"ld_preload": PREVENT})
    evil = spawn(procs, "sleep", "30", env={**os.environ, "LD_PRELOAD": str(built["lib"])})
    assert killed(evil)
    event = wait_event(state, "ld_preload", evil.pid)
    assert str(built["lib"]) in event["details"]["rule"]
    libc = next(Path("/usr/lib").glob("*-linux-gnu/libc.so.6"), None) or "libc.so.6"
    fine = subprocess.run(["sleep", "1"], env={**os.environ, "LD_PRELOAD": str(libc)}, timeout=20)
    assert fine.returncode == 0
    assert [e["pid"] for e in events(state) if e["module"] == "ld_preload"] == [evil.pid]


def test_ptrace_attach_to_a_protected_process_kills_the_tracer(
    agents: Agents, tmp_path: Path, built: dict[str, Path], procs: list[subprocess.Popen[bytes]]
) -> None:
    guarded = named_copy(built["dummy"], tmp_path, "traps-guarded")
    plain = named_copy(built["dummy"], tmp_path, "traps-plain")
    state = tmp_path / "agent"
    agent_pid = start_agent(agents, state, {"ptrace": {**PREVENT, "protected": [guarded.name]}})
    target = spawn(procs, guarded, stdout=subprocess.PIPE)
    ready(target)
    tracer = spawn(
        procs, sys.executable, "-c", TRACER_PY, target.pid, "attach", stdout=subprocess.PIPE
    )
    assert killed(tracer)
    event = wait_event(state, "ptrace", tracer.pid)
    assert event["details"]["target_pid"] == target.pid and event["action"] == "killed"
    assert target.poll() is None  # the protected process lives on

    # trapsd itself is always protected (SEIZE: the agent is not stopped by the attach)
    self_tracer = spawn(
        procs, sys.executable, "-c", TRACER_PY, agent_pid, "seize", stdout=subprocess.PIPE
    )
    assert killed(self_tracer)
    assert wait_event(state, "ptrace", self_tracer.pid)["details"]["target_pid"] == agent_pid

    other = spawn(procs, plain, stdout=subprocess.PIPE)
    ready(other)
    fine = spawn(procs, sys.executable, "-c", TRACER_PY, other.pid, "seize", stdout=subprocess.PIPE)
    ready(fine)
    strace = subprocess.run(["strace", "-o", "/dev/null", "true"], timeout=20)
    assert strace.returncode == 0
    assert fine.poll() is None
    assert [e["pid"] for e in events(state) if e["module"] == "ptrace"] == [
        self_tracer.pid,
        tracer.pid,
    ]


def test_wx_memory_in_a_protected_process_and_jit_runtimes_excluded(
    agents: Agents, tmp_path: Path, built: dict[str, Path], procs: list[subprocess.Popen[bytes]]
) -> None:
    guarded = named_copy(built["dummy"], tmp_path, "traps-wx")
    jit_dir = tmp_path / "jdk"
    jit_dir.mkdir()
    java = jit_dir / "java"
    java.write_bytes(built["dummy"].read_bytes())
    java.chmod(0o755)
    state = tmp_path / "agent"
    module = {**PREVENT, "protected": [guarded.name, "java"], "exclude": ["java"]}
    start_agent(agents, state, {"wx_memory": module})
    jit = spawn(procs, java, "rwx", stdout=subprocess.PIPE)
    ready(jit)
    clean = spawn(procs, guarded, stdout=subprocess.PIPE)
    ready(clean)
    evil = spawn(procs, guarded, "rwx", stdout=subprocess.PIPE)
    ready(evil)
    assert killed(evil)
    event = wait_event(state, "wx_memory", evil.pid)
    assert "rwxp" in event["details"]["regions"][0]
    wait_for(lambda: module_state(state, "wx_memory")["healthy"], 5)
    assert jit.poll() is None and clean.poll() is None
    assert [e["pid"] for e in events(state) if e["module"] == "wx_memory"] == [evil.pid]


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory ``nobody`` can enter (pytest's tmp dirs are 0700)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="traps-escalation-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_escalation_by_an_untrusted_setuid_root_helper_is_killed(
    agents: Agents,
    tmp_path: Path,
    built: dict[str, Path],
    public_dir: Path,
    procs: list[subprocess.Popen[bytes]],
) -> None:
    helper = named_copy(built["dummy"], public_dir, "escalate")
    os.chown(helper, 0, 0)
    helper.chmod(0o4755)
    state = tmp_path / "agent"
    start_agent(agents, state, {"privilege_escalation": PREVENT})
    evil = spawn(procs, helper, "setuid", user=65534, group=65534, stdout=subprocess.PIPE)
    assert killed(evil)
    event = wait_event(state, "privilege_escalation", evil.pid)
    assert event["severity"] == "critical"
    assert "outside trusted dirs" in event["details"]["rule"]
    # Trusted setuid-root tools run by an ordinary user are left alone.
    mount = subprocess.run(["mount"], user=65534, capture_output=True, timeout=20)
    assert mount.returncode == 0
    su = subprocess.run(["su", "--version"], user=65534, capture_output=True, timeout=20)
    assert su.returncode == 0
    found = [e for e in events(state) if e["module"] == "privilege_escalation"]
    assert [e["pid"] for e in found] == [evil.pid], found


def test_shipped_defaults_leave_ordinary_work_alone(
    agents: Agents, tmp_path: Path, built: dict[str, Path]
) -> None:
    """Every behaviour module on with its shipped mode: builds, pip, shells, setuid tools."""
    state = tmp_path / "agent"
    start_agent(agents, state, {}, shipped=True)
    modes = {m["name"]: m["mode"] for m in cli_json("policy", "--state-dir", state)["modules"]}
    assert (
        modes["reverse_shell"] == modes["ptrace"] == modes["privilege_escalation"] == "prevention"
    )
    work = tmp_path / "work"
    work.mkdir()
    source = built["dummy"].with_name("dummy.c")
    commands = [
        ["gcc", "-O2", "-o", str(work / "prog"), str(source)],
        [sys.executable, "-m", "pip", "--version"],
        ["bash", "-c", "ls / | wc -l; echo $((1 + 2))"],
        ["sh", "-c", "for i in 1 2 3; do true; done"],
        [sys.executable, "-c", "import ctypes, subprocess; subprocess.run(['true'])"],
        ["strace", "-f", "-o", "/dev/null", "sh", "-c", "true"],
    ]
    for command in commands:
        assert subprocess.run(command, capture_output=True, timeout=120).returncode == 0, command
    for command in (["mount"], ["su", "--version"], ["passwd", "--help"]):
        result = subprocess.run(command, user=65534, capture_output=True, timeout=20)
        assert result.returncode >= 0, command  # not killed (passwd --help may exit 0 or 2)
    assert scan_done(state)
    mine = [e for e in events(state) if str(tmp_path) in e["cmdline"] or e["action"] == "killed"]
    assert not mine, mine


def scan_done(state: Path) -> bool:
    """At least two periodic scans (1 s apart) ran since the work above."""
    first = cli_json("processes", "--state-dir", state)["stats"]["scans"]
    return bool(
        wait_for(
            lambda: cli_json("processes", "--state-dir", state)["stats"]["scans"] >= first + 2,
            10,
            0.3,
        )
    )

"""Restrictions and child-process protection against the real kernel (root).

Every sensor is stopped by a finalizer (the ``sensors``/``agent`` fixtures) and each test runs
under a hard timeout. Prevention-mode rules point at this test's tmp_path, or at parents that
are copies renamed ``nginx`` made here, so nothing else on the machine is affected.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import BEHAVIOUR_OFF, ROOT_ONLY, Sensors, free_url, policy_for, wait_for

from trapsd.config import AgentSettings
from trapsd.daemon import Agent
from trapsd.events import Detection
from trapsd.exec_rules import decide
from trapsd.identity import Identity, save_identity
from trapsd.policy import Policy, compile_policy, save_policy
from trapsd.sensors.fanotify import FanotifySensor
from trapsd.sensors.proc_connector import ProcConnectorSensor

pytestmark = [ROOT_ONLY, pytest.mark.root, pytest.mark.timeout(60, method="thread")]
PYTHON = os.path.realpath(sys.executable)
TRUE = shutil.which("true") or "/bin/true"
SH = "/bin/sh"
SPAWN = """
import subprocess, sys
try:
    print(subprocess.run(sys.argv[1:], timeout=20).returncode)
except PermissionError as exc:
    print("EPERM" if exc.errno == 1 else exc)
"""


def run(path: Path | str, *args: str) -> int:
    return subprocess.run([str(path), *args], timeout=20).returncode


def fanotify(
    sensors: Sensors, policy: Policy, events: list[Detection], **options: Any
) -> FanotifySensor:
    settings = AgentSettings(**options)
    sensor: FanotifySensor = sensors.start(
        lambda: FanotifySensor(settings, policy, events.append, decide)
    )
    assert sensor.health()[0], sensor.health()
    return sensor


def copy(source: str | Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    target.chmod(0o755)
    return target


def restrictions(mode: str, paths: list[Path], allow: list[Path] = []) -> Policy:  # noqa: B006
    module = {
        "enabled": True,
        "mode": mode,
        "paths": [str(p) for p in paths],
        "allow_paths": [str(p) for p in allow],
        "fstypes": [],
    }
    return policy_for([], modules={"restrictions": module})


def from_nginx(nginx: Path, *command: str) -> str:
    """What a process whose image is ``nginx`` gets when it starts ``command``."""
    result = subprocess.run(
        [str(nginx), "-c", SPAWN, *command], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_restrictions_prevent_a_listed_path_and_the_allow_list_wins(
    tmp_path: Path, sensors: Sensors
) -> None:
    drop = tmp_path / "drop"
    blocked = copy(TRUE, drop / "payload")
    approved = copy(TRUE, drop / "approved" / "tool")
    elsewhere = copy(TRUE, tmp_path / "elsewhere" / "tool")
    events: list[Detection] = []
    fanotify(sensors, restrictions("prevention", [drop], allow=[drop / "approved"]), events)

    for _ in range(2):  # the second time too: no ignore mark on a restricted path
        with pytest.raises(PermissionError) as info:
            run(blocked)
        assert info.value.errno == errno.EPERM
    assert run(approved) == 0  # allow-list beats block-list
    assert run(approved) == 0
    assert run(elsewhere) == 0
    assert run(TRUE) == 0

    wait_for(lambda: len(events) >= 2, 5)
    event = events[0]
    assert (event.module, event.action, event.severity) == ("restrictions", "prevented", "medium")
    assert event.process_path == str(blocked)
    assert event.details["rule"] == str(drop)
    assert event.details["parent_image"] == PYTHON  # pytest's interpreter started it
    assert event.ppid == os.getpid()
    assert len(events) == 2


def test_restrictions_in_notification_mode_allow_and_report(
    tmp_path: Path, sensors: Sensors
) -> None:
    drop = tmp_path / "drop"
    binary = copy(TRUE, drop / "payload")
    events: list[Detection] = []
    sensor = fanotify(sensors, restrictions("notification", [drop]), events)
    assert run(binary) == 0
    assert run(binary) == 0
    wait_for(lambda: len(events) == 2, 5)
    assert {(e.module, e.action) for e in events} == {("restrictions", "notified")}
    assert sensor.stats()["notified"] == 2


def child_policy(mode: str = "prevention", **rules: Any) -> Policy:
    return policy_for([], modules={"child_process": {"enabled": True, "mode": mode, **rules}})


def test_a_listed_parent_cannot_start_a_shell_that_others_can(
    tmp_path: Path, sensors: Sensors
) -> None:
    nginx = copy(PYTHON, tmp_path / "sbin" / "nginx")  # a real ELF that can spawn children
    events: list[Detection] = []
    fanotify(sensors, child_policy(), events)  # the shipped parent and child lists

    assert run(SH, "-c", "true") == 0  # a shell from an ordinary parent
    assert from_nginx(nginx, SH, "-c", "true") == "EPERM"
    assert from_nginx(nginx, TRUE) == "0"  # unlisted children run
    # a fork that execs an unlisted helper, which then execs the shell: still the server's
    assert from_nginx(nginx, "/usr/bin/env", "sh", "-c", "true") == "126"
    assert run(SH, "-c", "true") == 0

    wait_for(lambda: len(events) >= 2, 5)
    first, second = events[:2]
    assert (first.module, first.action, first.severity) == ("child_process", "prevented", "medium")
    assert first.process_path == os.path.realpath(SH)
    assert first.details["parent_image"] == str(nginx)
    assert first.details["rule"] == f"nginx -> {Path(os.path.realpath(SH)).name} (image)"
    assert second.details["rule"].endswith("(parent)")
    assert len(events) == 2


def test_a_child_allowed_from_a_normal_parent_is_not_ignored_later(
    tmp_path: Path, sensors: Sensors
) -> None:
    """Regression: a kernel ignore mark on the shell would skip the server's later exec."""
    nginx = copy(PYTHON, tmp_path / "nginx")
    events: list[Detection] = []
    sensor = fanotify(sensors, child_policy(), events, ignore_marks=True)
    for _ in range(3):
        assert run(SH, "-c", "true") == 0
        assert run(TRUE) == 0
    assert sensor.stats()["ignore_marks"] >= 1  # the cheap path still works for true
    assert from_nginx(nginx, SH, "-c", "true") == "EPERM"
    assert from_nginx(nginx, TRUE) == "0"


def test_notification_mode_lets_the_child_run_and_reports(tmp_path: Path, sensors: Sensors) -> None:
    nginx = copy(PYTHON, tmp_path / "nginx")
    events: list[Detection] = []
    fanotify(sensors, child_policy("notification"), events)
    assert from_nginx(nginx, SH, "-c", "exit 7") == "7"
    wait_for(lambda: events, 5)
    assert (events[0].module, events[0].action) == ("child_process", "notified")


def test_allow_pairs_let_a_server_run_a_known_helper(tmp_path: Path, sensors: Sensors) -> None:
    nginx = copy(PYTHON, tmp_path / "nginx")
    fanotify(sensors, child_policy(allow_pairs=["nginx:dash", "nginx:sh"]), [])
    assert from_nginx(nginx, SH, "-c", "true") == "0"
    curl = shutil.which("curl") or shutil.which("bash")
    if curl:  # other children stay forbidden
        assert from_nginx(nginx, curl, "--version") == "EPERM"


def test_without_fanotify_the_child_is_killed_after_start(tmp_path: Path, sensors: Sensors) -> None:
    nginx = copy(PYTHON, tmp_path / "nginx")
    events: list[Detection] = []
    policy = child_policy(parents=["nginx"])  # narrow: a killing sensor sees running processes
    sensors.start(
        lambda: ProcConnectorSensor(AgentSettings(), policy, events.append, decide, "test")
    )
    # A loop of builtins: no grandchild that could outlive the killed shell and hold the pipe.
    assert from_nginx(nginx, SH, "-c", "while :; do :; done") == str(-signal.SIGKILL)
    wait_for(lambda: events, 5)
    assert (events[0].module, events[0].action) == ("child_process", "killed")
    assert events[0].details["parent_image"] == str(nginx)


def test_the_shipped_defaults_leave_ordinary_work_alone(tmp_path: Path, sensors: Sensors) -> None:
    """Compiler, pip, a script from /tmp, a shell from python: all run; /tmp is reported."""
    events: list[Detection] = []
    fanotify(sensors, compile_policy({"version": 1}), events)
    script = tmp_path / "build.sh"
    script.write_text("#!/bin/sh\necho built\n")
    script.chmod(0o755)
    assert subprocess.run([str(script)], capture_output=True, timeout=20).returncode == 0
    pip = [sys.executable, "-m", "pip", "--version"]
    assert subprocess.run(pip, capture_output=True, timeout=60).returncode == 0
    assert run(SH, "-c", "ls / > /dev/null") == 0
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        source = tmp_path / "hello.c"
        source.write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
        compiled = subprocess.run([cc, "-o", str(tmp_path / "hello"), str(source)], timeout=60)
        assert compiled.returncode == 0
        assert run(tmp_path / "hello") == 0  # from /tmp: notified, not blocked
    assert all(e.action == "notified" and e.module == "restrictions" for e in events), events
    assert any(e.process_path == str(script) for e in events)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    settings = AgentSettings(
        state_dir=tmp_path / "agent", backoff_min_s=0.2, event_repeat_window_s=1.5
    )
    save_identity(settings.state_dir, Identity("agent-1", "secret", [free_url()]))
    # the shipped exec modules, without the host-wide behaviour modules (other runs' noise)
    save_policy(settings.state_dir, {"modules": BEHAVIOUR_OFF})
    daemon = Agent(settings)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.shutdown()


def test_a_loop_becomes_one_event_and_a_repeat_count(agent: Agent, tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    binary = copy(TRUE, drop / "loop")
    policy = restrictions("notification", [drop])
    module = {**policy.wire["modules"]["restrictions"], "user_alert": True}  # type: ignore[index]
    agent.apply_policy(policy_for([], modules={"restrictions": module}))
    for _ in range(20):
        assert run(binary) == 0
    first = wait_for(lambda: agent.outbox.take(10), 5)
    assert len(first) == 1
    assert first[0]["details"]["user_alert"] is True
    both = wait_for(lambda: (rows := agent.outbox.take(10)) and len(rows) == 2 and rows, 5)
    summary = both[1]
    assert summary["module"] == "restrictions" and summary["details"]["repeat_count"] == 19
    assert agent.limiter.suppressed == 19
    states = {m["name"]: m for m in agent.module_states()}
    assert states["restrictions"]["mode"] == "notification" and states["restrictions"]["healthy"]


MEMFD_SCRIPT = """
import json, os, shutil, subprocess, sys
from pathlib import Path
from trapsd.hardening import MemfdNoexec

def fileless():
    fd = os.memfd_create("payload", 0)
    os.write(fd, Path(shutil.which("true")).read_bytes())
    try:
        return subprocess.run([f"/proc/self/fd/{fd}"], pass_fds=[fd], timeout=10).returncode
    except PermissionError:
        return "EACCES"
    finally:
        os.close(fd)

hardening = MemfdNoexec(Path(sys.argv[1]))
before = hardening.read()
hardening.set(True)
hardened = (hardening.read(), fileless(), hardening.state(True))
hardening.set(False)
print(json.dumps({"before": before, "hardened": hardened, "after": hardening.read(),
                  "restored_run": fileless()}))
"""


def test_memfd_hardening_stops_fileless_execution_in_a_private_pid_namespace(
    tmp_path: Path,
) -> None:
    """vm.memfd_noexec is per PID namespace: this never changes the host's value."""
    sysctl = Path("/proc/sys/vm/memfd_noexec")
    if not sysctl.exists() or not shutil.which("unshare"):
        pytest.skip("needs vm.memfd_noexec (Linux 6.3+) and unshare (util-linux)")
    host = sysctl.read_text()
    result = subprocess.run(
        ["timeout", "30", "unshare", "--pid", "--fork", sys.executable, "-c", MEMFD_SCRIPT,
         str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=40,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    value, run_result, (healthy, _) = report["hardened"]
    assert (value, run_result, healthy) == (2, "EACCES", True)
    assert report["after"] == report["before"]
    assert report["restored_run"] == 0 or report["before"] == 2
    assert sysctl.read_text() == host


def test_a_hard_link_under_an_unlisted_name_does_not_open_a_hole(
    tmp_path: Path, sensors: Sensors
) -> None:
    """The same inode as a listed child, run under another name, must not get an ignore mark."""
    shell = copy(os.path.realpath(SH), tmp_path / "bin" / "dash")
    alias = tmp_path / "bin" / "innocent"
    os.link(shell, alias)
    nginx = copy(PYTHON, tmp_path / "nginx")
    fanotify(sensors, child_policy(), [], ignore_marks=True)
    for _ in range(3):
        assert run(alias, "-c", "true") == 0
    assert from_nginx(nginx, str(shell), "-c", "true") == "EPERM"

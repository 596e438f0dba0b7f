"""The exec sensors against the real kernel. Every sensor is stopped by a finalizer and each
test runs under a hard timeout (thread method: the process dies, which also fails open)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from agent_helpers import ROOT_ONLY, Sensors, make_binary, policy_for, wait_for

from trapsd.config import AgentSettings
from trapsd.events import Detection
from trapsd.exec_rules import decide
from trapsd.policy import Policy
from trapsd.sensors.base import create_sensor
from trapsd.sensors.fanotify import FanotifySensor
from trapsd.sensors.poll import PollSensor
from trapsd.sensors.proc_connector import ProcConnectorSensor

pytestmark = [ROOT_ONLY, pytest.mark.root, pytest.mark.timeout(60, method="thread")]


def run(path: Path, *args: str) -> int:
    return subprocess.run([str(path), *args], timeout=20).returncode


def fanotify(
    sensors: Sensors, policy: Policy, events: list[Detection], **options: object
) -> FanotifySensor:
    settings = AgentSettings(**options)  # type: ignore[arg-type]
    sensor: FanotifySensor = sensors.start(
        lambda: FanotifySensor(settings, policy, events.append, decide)
    )
    return sensor


def test_fanotify_denies_a_blocked_hash_before_it_runs(tmp_path: Path, sensors: Sensors) -> None:
    evil, sha256 = make_binary(tmp_path, "true", "evil-true")
    plain = tmp_path / "plain-true"
    shutil.copy(shutil.which("true") or "/bin/true", plain)
    events: list[Detection] = []
    sensor = fanotify(sensors, policy_for([sha256]), events)
    assert sensor.health()[0], sensor.health()

    with pytest.raises(PermissionError) as info:
        run(evil)
    assert info.value.errno == errno.EPERM
    renamed = tmp_path / "innocent-name"
    evil.rename(renamed)
    with pytest.raises(PermissionError):
        run(renamed)  # matched by content, not by name
    assert run(Path(shutil.which("true") or "/bin/true")) == 0
    assert run(plain) == 0

    wait_for(lambda: len(events) >= 2, 5)
    first = events[0]
    assert (first.action, first.sha256, first.process_path) == ("prevented", sha256, str(evil))
    assert first.ppid == os.getpid() and first.uid == 0 and first.pid
    assert first.details["mechanism"] == "fanotify"
    assert events[1].process_path == str(renamed)
    assert sensor.stats()["denied"] == 2


def test_a_policy_change_reaches_files_the_kernel_was_told_to_ignore(
    tmp_path: Path, sensors: Sensors
) -> None:
    binary, sha256 = make_binary(tmp_path, "true", "later-evil")
    events: list[Detection] = []
    sensor = fanotify(sensors, policy_for([]), events)
    for _ in range(3):
        assert run(binary) == 0  # allowed: the inode gets an ignore mark
    assert sensor.stats()["ignore_marks"] >= 1
    sensor.set_policy(policy_for([sha256], version=2))
    time.sleep(0.1)
    with pytest.raises(PermissionError):
        run(binary)
    sensor.set_policy(policy_for([sha256], mode="notification", version=3))
    time.sleep(0.1)
    assert run(binary) == 0
    wait_for(lambda: len(events) == 2, 5)
    assert [e.action for e in events] == ["prevented", "notified"]


def test_an_allowed_known_binary_reaches_the_agent_only_until_it_is_marked(
    tmp_path: Path, sensors: Sensors
) -> None:
    """Steady state of the exec-latency figure: once judged, the file's execs cost no event."""
    binary, sha256 = make_binary(tmp_path, "true", "often-run")
    digest = bytes.fromhex(sha256)
    asked: list[str] = []

    def counting(policy: Policy, seen: bytes, path: str) -> str:
        if seen == digest:
            asked.append(path)
        return decide(policy, seen, path)

    settings = AgentSettings()
    sensor: FanotifySensor = sensors.start(
        lambda: FanotifySensor(settings, policy_for([]), lambda _d: None, counting)
    )
    for _ in range(3):
        assert run(binary) == 0
    learned = len(asked)
    assert 1 <= learned <= 3 and sensor.stats()["ignore_marks"] >= 1
    for _ in range(30):
        assert run(binary) == 0
    assert len(asked) == learned  # the kernel's ignore mark answered every later exec


def test_the_watchdog_fails_open_and_restarts(tmp_path: Path, sensors: Sensors) -> None:
    slow, slow_sha = make_binary(tmp_path, "true", "slow-true")
    evil, evil_sha = make_binary(tmp_path, "true", "evil-true")
    slow_digest = bytes.fromhex(slow_sha)

    def sluggish(policy: Policy, digest: bytes, path: str) -> str:
        if digest == slow_digest:
            time.sleep(4)  # a verdict far slower than the watchdog allows
        return decide(policy, digest)

    settings = AgentSettings(watchdog_timeout_s=0.5)
    sensor: FanotifySensor = sensors.start(
        lambda: FanotifySensor(settings, policy_for([evil_sha]), [].append, sluggish)
    )
    started = time.monotonic()
    assert run(slow) == 0  # allowed by the kernel when the listener failed open
    assert time.monotonic() - started < 2.5
    healthy, detail = sensor.health()
    assert not healthy and "watchdog failed open" in detail
    assert sensor.stats()["watchdog_trips"] == 1
    with pytest.raises(PermissionError):
        run(evil)  # the new listener enforces
    assert run(slow) == 0  # and does not trip again on the file that hung


def test_proc_connector_kills_a_blocked_process(tmp_path: Path, sensors: Sensors) -> None:
    evil, sha256 = make_binary(tmp_path, "sleep", "evil-sleep")
    events: list[Detection] = []
    settings = AgentSettings()
    sensor = sensors.start(
        lambda: ProcConnectorSensor(settings, policy_for([sha256]), events.append, decide, "")
    )
    started = time.monotonic()
    assert run(evil, "30") == -signal.SIGKILL
    assert time.monotonic() - started < 5
    wait_for(lambda: events, 5)
    assert (events[0].action, events[0].sha256, events[0].process_path) == (
        "killed",
        sha256,
        str(evil),
    )
    assert events[0].cmdline == f"{evil} 30"
    assert sensor.health()[0] is False  # it cannot block: degraded


def test_psutil_polling_kills_a_blocked_process(tmp_path: Path, sensors: Sensors) -> None:
    evil, sha256 = make_binary(tmp_path, "sleep", "evil-sleep")
    events: list[Detection] = []
    settings = AgentSettings(poll_interval_s=0.1)
    sensor = sensors.start(
        lambda: PollSensor(settings, policy_for([sha256]), events.append, decide, "")
    )
    assert run(evil, "30") == -signal.SIGKILL
    wait_for(lambda: events, 5)
    assert events[0].details["mechanism"] == "psutil-poll"
    assert "polls every" in sensor.health()[1]


def test_a_policy_change_kills_what_already_runs(tmp_path: Path, sensors: Sensors) -> None:
    evil, sha256 = make_binary(tmp_path, "sleep", "evil-sleep")
    events: list[Detection] = []
    settings = AgentSettings(poll_interval_s=0.1)
    sensor = sensors.start(lambda: PollSensor(settings, policy_for([]), events.append, decide, ""))
    process = subprocess.Popen([str(evil), "30"])
    try:
        time.sleep(0.3)
        assert process.poll() is None
        sensor.set_policy(policy_for([sha256], version=2))
        assert process.wait(10) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()


def test_the_factory_picks_fanotify_as_root_and_falls_back_on_request(
    sensors: Sensors,
) -> None:
    events: list[Detection] = []
    best = create_sensor(AgentSettings(), policy_for([]), events.append)
    sensors.started.append(best)
    assert (best.mechanism, best.can_block) == ("fanotify", True)
    fallback = create_sensor(
        AgentSettings(malware_mechanism="proc-connector"), policy_for([]), events.append
    )
    sensors.started.append(fallback)
    assert (fallback.mechanism, fallback.can_block) == ("proc-connector", False)
    assert "cannot block before execution" in fallback.health()[1]


NOBODY_SCRIPT = """
import json, subprocess, sys, time
from trapsd.config import AgentSettings
from trapsd.policy import compile_policy
from trapsd.sensors.base import create_sensor
events = []
policy = compile_policy({"version": 1, "blocked_hashes": [sys.argv[2]]})
sensor = create_sensor(AgentSettings(poll_interval_s=0.1), policy, events.append)
try:
    rc = subprocess.run([sys.argv[1], "30"], timeout=20).returncode
    time.sleep(0.3)
    healthy, detail = sensor.health()
    actions = [e.action for e in events]
    print(json.dumps({"mechanism": sensor.mechanism, "healthy": healthy, "detail": detail,
                      "rc": rc, "actions": actions}))
finally:
    sensor.stop()
"""


def test_as_a_normal_user_it_says_so_and_kills_on_detection() -> None:
    """The real fallback chain as uid nobody: no fanotify, no proc connector -> polling."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is not installed")
    shared = Path(tempfile.mkdtemp(prefix="trapsd-nobody-"))
    try:
        shared.chmod(0o755)
        evil, sha256 = make_binary(shared, "sleep", "evil-sleep")
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        result = subprocess.run(
            ["timeout", "40", *drop, sys.executable, "-c", NOBODY_SCRIPT, str(evil), sha256],
            capture_output=True,
            text=True,
            timeout=50,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert (report["mechanism"], report["healthy"]) == ("psutil-poll", False)
        assert report["detail"].startswith("fanotify: not root: cannot block before execution")
        assert (report["rc"], report["actions"]) == (-signal.SIGKILL, ["killed"])
    finally:
        shutil.rmtree(shared)


NEW_MOUNT_SCRIPT = """
import json, subprocess, sys, time
from pathlib import Path
from trapsd.config import AgentSettings
from trapsd.exec_rules import decide
from trapsd.policy import compile_policy
from trapsd.sensors.fanotify import FanotifySensor
source, sha256, mnt = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
policy = compile_policy({"version": 1, "blocked_hashes": [sha256]})
sensor = FanotifySensor(AgentSettings(), policy, [].append, decide)
sensor.start()
try:
    before = sensor.health()[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "trapsd-test", str(mnt)], check=True)
    target = mnt / "evil"
    target.write_bytes(source.read_bytes())
    target.chmod(0o755)
    deadline = time.monotonic() + 5
    while sensor.health()[1] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        subprocess.run([str(target)], timeout=10)
        result = "ran"
    except PermissionError:
        result = "denied"
    print(json.dumps({"before": before, "after": sensor.health()[1], "result": result}))
finally:
    sensor.stop()
"""


def test_a_filesystem_mounted_later_is_watched_too(tmp_path: Path) -> None:
    """In a private mount namespace, so that the host's mount table is never touched."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    evil, sha256 = make_binary(tmp_path, "true", "evil-true")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    isolate = ["unshare", "--mount", "--propagation", "private"]
    result = subprocess.run(
        ["timeout", "40", *isolate, sys.executable, "-c", NEW_MOUNT_SCRIPT, evil, sha256, mnt],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["before"] != report["after"]
    assert report["result"] == "denied"

"""The behaviour modules' pure decisions, their policy and the pieces with no kernel part."""

from __future__ import annotations

import ctypes
import gzip
import json
import mmap
import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from trapsd.behaviour import rules
from trapsd.behaviour.rules import Creds, Image
from trapsd.forensics import enforce_quota, load_bundle, summaries
from trapsd.policy import PolicyError, compile_policy, default_policy
from trapsd.sensors.cn_proc import (
    PROC_EVENT_EXEC,
    PROC_EVENT_FORK,
    PROC_EVENT_PTRACE,
    PROC_EVENT_UID,
    parse_events,
)


def behaviour(**modules: Any) -> rules.Behaviour:
    return compile_policy({"modules": modules}).behaviour


DEFAULTS = default_policy().behaviour


def test_shipped_defaults_and_server_overrides() -> None:
    modes = {n: DEFAULTS.config(n).mode for n in ("reverse_shell", "fileless", "ptrace")}
    assert modes == {
        "reverse_shell": "prevention",
        "fileless": "notification",
        "ptrace": "prevention",
    }
    assert DEFAULTS.ld_preload.mode == "notification" and DEFAULTS.wx_memory.mode == "notification"
    assert DEFAULTS.privilege_escalation.mode == "prevention"
    b = behaviour(fileless={"mode": "prevention", "user_alert": True}, ptrace={"enabled": False})
    assert b.fileless.mode == "prevention" and b.fileless.user_alert and b.fileless.enabled
    assert not b.ptrace.active and b.ptrace_protected == DEFAULTS.ptrace_protected
    assert behaviour(ptrace={"protected": ["mydb"]}).ptrace_protects("/opt/x/mydb")


@pytest.mark.parametrize(
    ("modules", "error"),
    [
        ({"wx_memory": {"mode": "loud"}}, "unknown mode"),
        ({"ld_preload": {"trusted_dirs": ["lib"]}}, "is not absolute"),
        ({"reverse_shell": {"shells": "bash"}}, "list of non-empty strings"),
        ({"ptrace": []}, "must be an object"),
    ],
)
def test_bad_module_settings_are_rejected(modules: dict[str, Any], error: str) -> None:
    with pytest.raises(PolicyError, match=error):
        compile_policy({"modules": modules})


def test_reverse_shell_needs_a_shell_with_tcp_stdio() -> None:
    tcp = {0: "tcp 10.0.0.9:4444", 1: "tcp 10.0.0.9:4444"}
    assert rules.reverse_shell(DEFAULTS, "/usr/bin/bash", tcp) == "bash fd 0 is tcp 10.0.0.9:4444"
    assert rules.reverse_shell(DEFAULTS, "/usr/bin/dash", {1: "tcp [::1]:1"}) is not None
    assert rules.reverse_shell(DEFAULTS, "/usr/bin/bash", {0: None, 1: None}) is None  # unix
    assert rules.reverse_shell(DEFAULTS, "/usr/bin/bash", {2: "tcp 1.2.3.4:5"}) is None
    assert rules.reverse_shell(DEFAULTS, "/usr/bin/python3", tcp) is None
    off = behaviour(reverse_shell={"enabled": False})
    assert rules.reverse_shell(off, "/usr/bin/bash", tcp) is None


def test_fileless_images() -> None:
    assert rules.fileless(DEFAULTS, "/memfd:payload (deleted)") == "memfd"
    assert rules.fileless(DEFAULTS, "/tmp/x (deleted)") == "deleted binary"
    assert rules.fileless(DEFAULTS, "/usr/bin/true") is None
    assert rules.fileless(behaviour(fileless={"mode": "off"}), "/memfd:x") is None


def test_preloads_and_trusted_dirs() -> None:
    env = b"PATH=/bin\0LD_PRELOAD=/tmp/evil.so libfoo.so:/usr/lib/x86_64-linux-gnu/libasan.so\0"
    libs = rules.preloads(env)
    assert libs == ["/tmp/evil.so", "libfoo.so", "/usr/lib/x86_64-linux-gnu/libasan.so"]
    assert rules.untrusted_preloads(DEFAULTS, libs) == ["/tmp/evil.so"]
    assert rules.untrusted_preloads(DEFAULTS, ["./rel.so", "/usr/libevil/x.so"]) == [
        "./rel.so",
        "/usr/libevil/x.so",
    ]
    assert rules.preloads(b"HOME=/root\0") == []


def test_ptrace_targets() -> None:
    assert rules.ptrace_target(DEFAULTS, "/usr/sbin/sshd", False) == "sshd"
    assert rules.ptrace_target(DEFAULTS, "/usr/lib/postgresql/15/bin/postgres", False) == "postgres"
    assert rules.ptrace_target(DEFAULTS, "/usr/bin/python3.11", True) == "trapsd"
    assert rules.ptrace_target(DEFAULTS, "/usr/bin/sleep", False) is None


def test_wx_regions_are_anonymous_writable_executable_only() -> None:
    maps = [
        "7f00-7f01 rwxp 00000000 00:00 0 \n",
        "7f02-7f03 r-xp 00000000 08:01 42 /usr/lib/libc.so.6\n",
        "7f04-7f05 rwxp 00000000 08:01 43 /usr/lib/libjit.so\n",
        "7f06-7f07 rwxp 00000000 00:00 0  [heap]\n",
        "7f08-7f09 rw-p 00000000 00:00 0 \n",
        "7f0a-7f0b rwxs 00000000 00:01 7 /dev/zero (deleted)\n",
        "7f0c-7f0d rwxs 00000000 00:01 8 /memfd:jit (deleted)\n",
    ]
    assert rules.wx_regions(maps) == [
        "7f00-7f01 rwxp [anon]",
        "7f06-7f07 rwxp [heap]",
        "7f0a-7f0b rwxs /dev/zero (deleted)",
        "7f0c-7f0d rwxs /memfd:jit (deleted)",
    ]
    assert DEFAULTS.wx_protects("/usr/sbin/nginx") and not DEFAULTS.wx_protects("/usr/bin/java")


def test_the_scan_reads_the_same_wx_regions_as_the_whole_maps() -> None:
    """probes.wx_lines (the periodic scan's read) finds what parsing every line finds, here
    an anonymous W+X page of this process."""
    from trapsd.behaviour import probes

    page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        found = rules.wx_regions(probes.wx_lines(os.getpid()))
        assert any(int(r.split("-")[0], 16) == address for r in found)
        assert found == rules.wx_regions(probes.maps(os.getpid()))
        assert probes.wx_lines(2**22 + 1) == []  # no such process
    finally:
        page.close()


NOBODY = Creds(65534, 65534, 65534)
ROOT = Creds(0, 0, 0)


@pytest.mark.parametrize(
    ("before", "after", "image", "expected"),
    [
        (NOBODY, ROOT, Image("/tmp/x/escalate", True), "setuid-root binary outside trusted dirs"),
        (NOBODY, Creds(65534, 0, 0), Image("/usr/bin/passwd", True), None),  # trusted setuid
        (NOBODY, ROOT, Image("/usr/bin/su", True), None),  # known tool
        (NOBODY, ROOT, Image("/home/u/exploit", False), "uid 65534/65534 became 0/0"),
        (Creds(1000, 1000, 0), ROOT, Image("/usr/sbin/smbd", False), None),  # dropped, regains
        (Creds(0, 1000, 0), ROOT, Image("/usr/sbin/x", False), None),  # seteuid back
        (ROOT, ROOT, Image("/tmp/x", False), None),
        (NOBODY, NOBODY, Image("/tmp/x", False), None),  # not to root
        (None, ROOT, Image("/tmp/x", False), None),  # unknown before: no verdict
        (Creds(-1, -1), ROOT, Image("/tmp/x", False), None),
        (NOBODY, ROOT, Image("/tmp/su", True), "setuid-root binary outside trusted dirs"),
    ],
)
def test_escalation(before: Creds | None, after: Creds, image: Image, expected: str | None) -> None:
    why = rules.escalation(DEFAULTS, before, after, image)
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected)


def test_escalation_is_silent_when_the_module_is_off() -> None:
    off = behaviour(privilege_escalation={"enabled": False})
    assert rules.escalation(off, NOBODY, ROOT, Image("/tmp/x", False)) is None


def test_environment_secrets_are_redacted() -> None:
    env = b"GITHUB_TOKEN=ghp_1\0AWS_REGION=eu\0DB_PASSWORD=x\0MY_API_KEY=k\0HOME=/root\0junk\0"
    assert rules.redact_environ(env) == {
        "GITHUB_TOKEN": "<redacted>",
        "AWS_REGION": "<redacted>",
        "DB_PASSWORD": "<redacted>",
        "MY_API_KEY": "<redacted>",
        "HOME": "/root",
    }


def _message(what: int, payload: bytes) -> bytes:
    """As the kernel sends it: the whole struct proc_event (its union is 24 bytes)."""
    body = struct.pack("=IIQ", what, 0, 123) + payload.ljust(24, b"\0")
    cn = struct.pack("=IIIIHH", 1, 1, 0, 0, len(body), 0) + body
    return struct.pack("=IHHII", 16 + len(cn), 3, 0, 0, 0) + cn


def test_connector_messages_are_parsed() -> None:
    data = (
        _message(PROC_EVENT_FORK, struct.pack("=IIII", 10, 10, 11, 11))
        + _message(PROC_EVENT_FORK, struct.pack("=IIII", 10, 10, 12, 10))  # a thread
        + _message(PROC_EVENT_EXEC, struct.pack("=II", 11, 11))
        + _message(PROC_EVENT_UID, struct.pack("=IIII", 11, 11, 1000, 0))
        + _message(PROC_EVENT_PTRACE, struct.pack("=IIII", 11, 11, 20, 20))
    )
    assert [(m[1], *m[3:]) for m in parse_events(data)] == [
        (PROC_EVENT_FORK, 10, 10, 11, 11),
        (PROC_EVENT_FORK, 10, 10, 12, 10),
        (PROC_EVENT_EXEC, 11, 11, 0, 0),
        (PROC_EVENT_UID, 11, 11, 1000, 0),
        (PROC_EVENT_PTRACE, 11, 11, 20, 20),
    ]
    assert parse_events(data[:20]) == []  # truncated: nothing, no exception
    assert [(m[1], *m[3:]) for m in parse_events(bytearray(data) + bytes(100), 76)] == [
        (PROC_EVENT_FORK, 10, 10, 11, 11)  # only the bytes received
    ]
    ack = parse_events(_message(0, struct.pack("=II", 1, 0)))  # PROC_EVENT_NONE, EPERM
    assert [(m[1], m[2], m[3]) for m in ack] == [(0, 123, 1)]  # what, timestamp, error


def test_forensics_quota_drops_the_oldest_first(tmp_path: Path) -> None:
    for n in range(5):
        path = tmp_path / f"0000000{n}-aaaa.json.gz"
        path.write_bytes(gzip.compress(json.dumps({"n": n, "pad": os.urandom(50).hex()}).encode()))
        os.utime(path, ns=(n * 10**9, n * 10**9))
    assert enforce_quota(tmp_path, max_bytes=10**6, max_bundles=3) == 2
    assert [s["id"] for s in summaries(tmp_path)] == [
        "00000004-aaaa",
        "00000003-aaaa",
        "00000002-aaaa",
    ]
    size = (tmp_path / "00000004-aaaa.json.gz").stat().st_size
    assert enforce_quota(tmp_path, max_bytes=size, max_bundles=10) == 2
    assert load_bundle(tmp_path, "../../etc/passwd") is None
    assert load_bundle(tmp_path, "00000003-aaaa") is None  # evicted
    assert (load_bundle(tmp_path, "00000004-aaaa") or {}).get("n") == 4


def test_ld_so_preload_changes_are_reported(tmp_path: Path) -> None:
    from trapsd.behaviour.engine import BehaviourEngine
    from trapsd.config import AgentSettings
    from trapsd.events import Detection

    found: list[Detection] = []
    preload = tmp_path / "ld.so.preload"
    engine = BehaviourEngine(AgentSettings(), default_policy(), found.append, None, str(preload))
    engine.scan()  # no file: nothing
    preload.write_text("# comment\n/usr/lib/x86_64-linux-gnu/libfine.so\n")
    engine.scan()
    preload.write_text("/usr/lib/x86_64-linux-gnu/libfine.so /dev/shm/evil.so\n")
    engine.scan()
    engine.scan()  # unchanged: reported once
    assert [(d.module, d.action, d.details["rule"]) for d in found] == [
        ("ld_preload", "notified", f"{preload}: /dev/shm/evil.so")
    ]


def test_local_hash_verdicts_say_where_they_come_from() -> None:
    from trapsd.inspection import hash_verdict

    blocked, allowed, other = "ab" * 32, "cd" * 32, "ef" * 32
    policy = compile_policy(
        {"version": 3, "blocked_hashes": [blocked, allowed], "allowed_hashes": [allowed]}
    )
    assert hash_verdict(policy, blocked)["verdict"] == "blocked"
    assert hash_verdict(policy, blocked)["source"] == "policy blocked_hashes"
    assert hash_verdict(policy, allowed)["verdict"] == "allowed"  # the allow-list wins
    unknown = hash_verdict(policy, other)
    assert (unknown["verdict"], unknown["policy_version"]) == ("unknown", 3)


def test_a_bundle_is_gzip_json_with_redacted_environment_and_hashes(tmp_path: Path) -> None:
    import subprocess

    from trapsapi.errors import TrapsError
    from trapsd.forensics import Forensics

    env = {"PATH": "/usr/bin:/bin", "TRAPS_TEST_SECRET": "s3cret", "TRAPS_TEST_PLAIN": "p"}
    child = subprocess.Popen(["sleep", "30"], env=env)
    maps = Path(f"/proc/{child.pid}/maps")
    deadline = time.monotonic() + 10  # snapshot sleep itself, once it has loaded libc
    while b"libc" not in maps.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        forensics = Forensics(tmp_path, 10**7, 10, timeout_s=5)
        forensics.start()
        snapshot = forensics.snapshot(child.pid)
        assert forensics.submit("0123abcd-0000", snapshot, {"pid": child.pid, "module": "x"})
        forensics.stop()  # processes what is queued first
    finally:
        child.kill()
        child.wait()
    path = tmp_path / "forensics" / "0123abcd-0000.json.gz"
    assert path.stat().st_mode & 0o777 == 0o600
    bundle = json.loads(gzip.decompress(path.read_bytes()))
    process = bundle["process"]
    assert bundle["event"]["module"] == "x" and process["pid"] == child.pid
    assert process["environ"] == {**env, "TRAPS_TEST_SECRET": "<redacted>"}
    assert process["cmdline"] == "sleep 30" and process["cwd"] == os.getcwd()
    assert len(bundle["hashes"][process["exe"]]) == 64 and not bundle["truncated"]
    assert any("libc" in lib for lib in process["libraries"])
    assert bundle["ancestors"][0]["pid"] == os.getpid()
    assert forensics.counts["written"] == 1
    path.write_bytes(b"not gzip")
    with pytest.raises(TrapsError, match="corrupt"):
        load_bundle(tmp_path / "forensics", "0123abcd-0000")


def test_the_optional_memory_dump_copies_wx_regions_within_its_budget(tmp_path: Path) -> None:
    import base64
    import subprocess
    import sys

    from trapsd.forensics import Forensics

    code = (
        "import mmap; m = mmap.mmap(-1, 8192, prot=7); m.write(b'TRAPS-RWX' * 4);"
        "print('ready', flush=True); input()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        off = Forensics(tmp_path, 10**6, 10, 5).snapshot(child.pid)
        assert off["process"]["wx_regions"] and "memory" not in off["process"]
        dump = Forensics(tmp_path, 10**6, 10, 5, memory_dump_bytes=16).snapshot(child.pid)
    finally:
        child.kill()
        child.wait()
    memory = dump["process"]["memory"]
    assert sum(len(base64.b64decode(m["base64"])) for m in memory) <= 16
    assert any(base64.b64decode(m["base64"]) == b"TRAPS-RWXTRAPS-R" for m in memory)

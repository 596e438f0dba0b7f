"""The restrictions and child-process decisions, the shipped defaults and the event limiter:
pure logic, no kernel."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import free_url

from trapsd.config import AgentSettings
from trapsd.daemon import Agent
from trapsd.defaults import (
    CHILD_PROCESS,
    FORBIDDEN_CHILDREN,
    MEMFD_NOEXEC,
    PROTECTED_PARENTS,
    RESTRICTIONS,
)
from trapsd.events import Detection, _ppid, parent_images
from trapsd.exec_rules import (
    DENY,
    NOTIFY,
    decide_child,
    decide_exec,
    decide_restriction,
    depends_on_path,
    image_name,
)
from trapsd.hardening import MemfdNoexec
from trapsd.identity import Identity, save_identity
from trapsd.policy import PolicyError, compile_policy, default_policy
from trapsd.ratelimit import EventLimiter
from trapsd.sensors.mounts import Mount, network_mounts, select_mounts


def parents(*images: str) -> Any:
    def lookup() -> Iterable[tuple[str, str]]:
        return [(image, "image" if n == 0 else "parent") for n, image in enumerate(images)]

    return lookup


NOBODY = parents("/usr/bin/bash", "/usr/lib/systemd/systemd")


def test_shipped_defaults_and_their_modes() -> None:
    policy = default_policy()
    assert policy.restrictions.config.mode == "notification"  # /tmp is ordinary in builds
    assert policy.child_process.config.mode == "prevention"
    assert not policy.memfd_noexec.enabled
    assert policy.exec_active
    finding = decide_restriction(policy.restrictions, "/tmp/build/a.out", None)
    assert finding is not None and (finding.decision, finding.rule) == (NOTIFY, "/tmp")
    for path in ("/var/tmp/x", "/dev/shm/x", "/run/user/1000/x", "/media/usb/x", "/mnt/x"):
        assert decide_restriction(policy.restrictions, path, None) is not None, path
    for path in ("/usr/bin/ls", "/tmpfoo/x", "/home/me/tmp/x", "/opt/mnt/x"):
        assert decide_restriction(policy.restrictions, path, None) is None, path
    share = decide_restriction(policy.restrictions, "/srv/share/tool", "nfs4")
    assert share is not None and share.rule == "fstype:nfs4"


def test_the_server_overrides_enabled_mode_and_alert_but_keeps_the_default_lists() -> None:
    policy = compile_policy(
        {
            "version": 3,
            "modules": {
                "malware": {"enabled": True, "mode": "prevention", "user_alert": False},
                RESTRICTIONS: {"enabled": True, "mode": "prevention", "user_alert": True},
                CHILD_PROCESS: {"enabled": False, "mode": "prevention", "user_alert": False},
            },
        }
    )
    assert policy.restrictions.config.mode == "prevention" and policy.restrictions.config.user_alert
    assert policy.restrictions.paths.prefixes[0] == "/tmp"  # the shipped list still applies
    assert not policy.child_process.config.active
    finding = decide_restriction(policy.restrictions, "/dev/shm/payload", None)
    assert finding is not None and finding.decision == DENY
    # a policy without the new modules (what the server sends today) gets every default
    assert compile_policy({"version": 1}).child_process == default_policy().child_process


@pytest.mark.parametrize(
    "module",
    [
        {RESTRICTIONS: {"paths": "/tmp"}},
        {RESTRICTIONS: {"paths": ["relative/dir"]}},
        {RESTRICTIONS: {"mode": "sometimes"}},
        {CHILD_PROCESS: {"allow_pairs": ["nginx"]}},
        {CHILD_PROCESS: {"children": [""]}},
        {CHILD_PROCESS: []},
    ],
)
def test_bad_module_settings_are_refused_whole(module: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        compile_policy({"version": 1, "modules": module})


def test_allow_list_beats_block_list_and_globs_match_full_paths() -> None:
    policy = compile_policy(
        {
            "modules": {
                RESTRICTIONS: {
                    "mode": "prevention",
                    "paths": ["/opt/drop", "/home/*/Downloads/*"],
                    "allow_paths": ["/opt/drop/approved", "*.trusted"],
                    "fstypes": [],
                }
            }
        }
    )
    rules = policy.restrictions
    blocked = decide_restriction(rules, "/opt/drop/x", None)
    assert blocked is not None and blocked.decision == DENY and blocked.rule == "/opt/drop"
    glob = decide_restriction(rules, "/home/eve/Downloads/setup", None)
    assert glob is not None and glob.rule == "/home/*/Downloads/*"
    assert decide_restriction(rules, "/opt/drop/approved/tool", None) is None
    assert decide_restriction(rules, "/opt/drop/tool.trusted", None) is None
    assert decide_restriction(rules, "/tmp/x", None) is None  # replaced, not merged
    assert decide_restriction(rules, "/srv/nfs/x", "nfs") is None


def test_child_process_needs_a_listed_parent_and_a_listed_child() -> None:
    rules = default_policy().child_process
    finding = decide_child(rules, "/usr/bin/dash", parents("/usr/sbin/nginx", "/sbin/init"))
    assert finding is not None and finding.decision == DENY
    assert finding.rule == "nginx -> dash (image)" and finding.parent_image == "/usr/sbin/nginx"
    # a fork that execs an unlisted helper first: the parent process still counts
    via = decide_child(rules, "/usr/bin/bash", parents("/usr/bin/env", "/usr/sbin/apache2"))
    assert via is not None and via.rule == "apache2 -> bash (parent)"
    # an upgraded (deleted) server binary is still that server
    redis = parents("/usr/bin/redis-check-rdb")  # Debian's redis-server is a link to it
    assert decide_child(rules, "/usr/bin/dash", redis) is not None
    upgraded = parents("/usr/lib/postgresql/15/bin/postgres (deleted)")
    assert decide_child(rules, "/usr/bin/python3.11", upgraded) is not None
    assert decide_child(rules, "/usr/bin/dash", NOBODY) is None
    assert decide_child(rules, "/usr/bin/gzip", parents("/usr/sbin/nginx")) is None
    for child in ("/usr/bin/nc.openbsd", "/usr/bin/curl", "/usr/bin/perl5.36.0", "/usr/bin/gcc-12"):
        assert decide_child(rules, child, parents("/usr/sbin/mariadbd")) is not None, child


def test_the_parent_lookup_runs_only_for_listed_children() -> None:
    def exploding() -> Iterable[tuple[str, str]]:
        raise AssertionError("read /proc for an unlisted child")

    assert decide_exec(default_policy(), "/usr/bin/make", None, exploding) == []


def test_allow_pairs_make_exceptions() -> None:
    policy = compile_policy(
        {"modules": {CHILD_PROCESS: {"allow_pairs": ["postgres:sh", "postgres:dash"]}}}
    )
    rules = policy.child_process
    assert decide_child(rules, "/usr/bin/dash", parents("/usr/bin/postgres")) is None
    assert decide_child(rules, "/usr/bin/curl", parents("/usr/bin/postgres")) is not None


def test_notification_mode_reports_and_both_modules_can_match() -> None:
    policy = compile_policy({"modules": {CHILD_PROCESS: {"mode": "notification"}}})
    findings = decide_exec(policy, "/tmp/bash", None, parents("/usr/sbin/nginx"))
    assert [(f.module, f.decision) for f in findings] == [
        (RESTRICTIONS, NOTIFY),
        (CHILD_PROCESS, NOTIFY),
    ]


def test_files_whose_verdict_depends_on_the_path_never_get_ignore_marks() -> None:
    policy = default_policy()
    assert depends_on_path(policy, "/usr/bin/dash", None)  # a listed child
    assert depends_on_path(policy, "/usr/bin/python3.11", None)
    assert depends_on_path(policy, "/tmp/x", None)  # a restricted path, even in notification
    assert depends_on_path(policy, "/srv/share/x", "cifs")
    assert not depends_on_path(policy, "/usr/bin/ls", None)
    assert not depends_on_path(policy, "/usr/lib/postgresql/15/bin/postgres", None)
    off = compile_policy(
        {"modules": {RESTRICTIONS: {"enabled": False}, CHILD_PROCESS: {"mode": "off"}}}
    )
    assert not depends_on_path(off, "/usr/bin/dash", None)
    assert not depends_on_path(off, "/tmp/x", None)


def test_the_default_lists_do_not_list_this_hosts_tooling() -> None:
    rules = default_policy().child_process
    for name in ("python3.11", "sh", "dash", "cc", "gcc", "curl", "node", "nc.openbsd"):
        assert rules.is_listed_child(name), name
    for name in ("make", "ld", "env", "git", "pip", "pytest", "psql", "pg_ctl", "initdb"):
        assert not rules.is_listed_child(name), name
        assert not rules.is_listed_parent(name), name
    assert "postgres" in PROTECTED_PARENTS and "dash" in FORBIDDEN_CHILDREN
    assert image_name("/usr/sbin/nginx (deleted)") == "nginx"


def detection(path: str = "/tmp/x", parent: str = "/usr/bin/bash") -> Detection:
    return Detection(
        "notified", path, None, 1, module=RESTRICTIONS, details={"parent_image": parent}
    )


def test_duplicates_within_the_window_become_one_event_with_a_count() -> None:
    limiter = EventLimiter(window_s=60)
    first = detection()
    assert limiter.admit(first, 0.0) == [first]
    for n in range(1, 5):
        assert limiter.admit(detection(), float(n)) == []
    other = detection("/tmp/y")
    assert limiter.admit(other, 5.0) == [other]  # another path is another event
    assert limiter.admit(detection(parent="/usr/sbin/nginx"), 6.0) != []
    assert limiter.expire(59.0) == []
    assert limiter.next_expiry() == 60.0  # the writer sleeps until then, not a tick sooner
    (summary,) = limiter.expire(60.0)
    assert summary.details["repeat_count"] == 4 and summary.process_path == "/tmp/x"
    assert limiter.expire(120.0) == []  # the others had no duplicates: nothing more
    assert limiter.admit(detection(), 121.0) != []  # a new window
    assert limiter.suppressed == 4
    assert EventLimiter(window_s=60).next_expiry() is None  # nothing open: no wake-up at all


def test_the_limiter_is_bounded_and_flushes_on_stop() -> None:
    limiter = EventLimiter(window_s=60, max_keys=2)
    for path in ("/tmp/a", "/tmp/b"):
        limiter.admit(detection(path), 0.0)
        limiter.admit(detection(path), 0.0)
    out = limiter.admit(detection("/tmp/c"), 1.0)  # evicts /tmp/a's window: its summary
    assert [(d.process_path, d.details.get("repeat_count")) for d in out] == [
        ("/tmp/a", 1),
        ("/tmp/c", None),
    ]
    assert [d.process_path for d in limiter.flush()] == ["/tmp/b"]


def test_network_filesystems_are_watched_only_when_restricted_by_type() -> None:
    mounts = [
        Mount("1", "8:1", "/", "ext4"),
        Mount("2", "0:40", "/proc", "proc"),
        Mount("3", "0:50", "/srv/share", "nfs4"),
        Mount("4", "0:51", "/srv/share/cache", "tmpfs"),
    ]
    chosen, _ = select_mounts(mounts)
    assert [m.mount_point for m in chosen] == ["/", "/srv/share/cache"]
    chosen, _ = select_mounts(mounts, network=["nfs4"])
    assert [m.mount_point for m in chosen] == ["/", "/srv/share", "/srv/share/cache"]
    assert network_mounts(mounts) == (("/srv/share/cache", ""), ("/srv/share", "nfs4"))
    assert network_mounts(mounts[:2]) == ()


def test_memfd_hardening_saves_sets_and_restores(tmp_path: Path) -> None:
    sysctl = tmp_path / "memfd_noexec"
    sysctl.write_text("1\n")
    hardening = MemfdNoexec(tmp_path, sysctl)
    assert hardening.state(False) == (True, "disabled by policy")
    hardening.set(True)
    assert sysctl.read_text() == "2\n" and hardening.applied
    assert hardening.state(True)[0]
    hardening.set(True)  # idempotent: the saved original stays 1, not 2
    # a crash: a new agent finds 2 and the saved original, and restores it when told to
    again = MemfdNoexec(tmp_path, sysctl)
    again.set(False)
    assert sysctl.read_text() == "1\n" and not again.applied
    assert not (tmp_path / "memfd_noexec.json").exists()
    again.set(False)  # nothing saved: nothing to do
    assert sysctl.read_text() == "1\n"


def test_memfd_hardening_reports_what_it_cannot_do(tmp_path: Path) -> None:
    missing = MemfdNoexec(tmp_path, tmp_path / "absent")
    missing.set(True)
    healthy, detail = missing.state(True)
    assert not healthy and "Linux 6.3" in detail


def test_the_agent_applies_and_undoes_memfd_hardening(tmp_path: Path) -> None:
    settings = AgentSettings(state_dir=tmp_path / "agent", malware_mechanism="psutil-poll")
    save_identity(settings.state_dir, Identity("agent-1", "secret", [free_url()]))
    sysctl = tmp_path / "memfd_noexec"
    sysctl.write_text("0\n")
    agent = Agent(settings)
    agent.memfd = MemfdNoexec(settings.state_dir, sysctl)
    try:
        agent.start()
        assert sysctl.read_text() == "0\n"  # off by default
        agent.apply_policy(
            compile_policy({"version": 2, "modules": {MEMFD_NOEXEC: {"enabled": True}}})
        )
        assert sysctl.read_text() == "2\n"
        state = next(m for m in agent.module_states() if m["name"] == MEMFD_NOEXEC)
        assert (state["enabled"], state["mechanism"], state["healthy"]) == (True, "sysctl", True)
        agent.apply_policy(compile_policy({"version": 3}))
        assert sysctl.read_text() == "0\n"
        agent.apply_policy(
            compile_policy({"version": 4, "modules": {MEMFD_NOEXEC: {"enabled": True}}})
        )
    finally:
        agent.shutdown()
    assert sysctl.read_text() == "0\n"  # stopping gives the host its value back


def test_the_parent_pid_comes_from_proc_stat() -> None:
    child = subprocess.Popen(["sleep", "5"], start_new_session=True)  # its own process group
    try:
        assert _ppid(child.pid) == os.getpid()
        images = list(parent_images(child.pid, before_exec=False))
        assert images == [(os.path.realpath(sys.executable), "parent")]
    finally:
        child.kill()
        child.wait()
    assert _ppid(2**22 + 1) is None

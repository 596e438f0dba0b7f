"""The agent side of policy objects: what esmd builds compiles on the agent, bad settings are
refused whole, changes are logged, and a real trapsd applies a server policy end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import Agents, trapsd, wait_for

from trapsd import defaults, hostinfo, policylog
from trapsd.files import read_json
from trapsd.policy import PolicyError, compile_policy

pytest.importorskip("esmd.app", reason="esmd is not built yet")


def server_policy(rules: dict[str, Any] | None = None, version: int = 7) -> dict[str, Any]:
    """What esmd sends an agent matched by the default policy (plus ``rules`` on top)."""
    from esmd.services.policy import agent_policy
    from esmd.services.policy_defaults import BUILTIN
    from esmd.services.policy_resolve import flatten

    settings = {**BUILTIN, **flatten(rules or {})}
    built = agent_policy(settings, version, 60, (["ab" * 32], []))
    wire: dict[str, Any] = built.model_dump(mode="json")
    return wire


def test_the_default_server_policy_is_the_agents_shipped_defaults() -> None:
    policy = compile_policy(server_policy())
    shipped = compile_policy({"version": 7})
    assert policy.restrictions == shipped.restrictions
    assert policy.child_process == shipped.child_process
    assert policy.memfd_noexec.active is shipped.memfd_noexec.active is False
    assert policy.malware == shipped.malware.__class__(True, "prevention", True)
    assert set(policy.restrictions.paths.prefixes) == set(defaults.RESTRICTED_PATHS)
    assert policy.behaviour == shipped.behaviour
    names = ("reverse_shell", "fileless", "ld_preload", "ptrace", "wx_memory")
    assert {n: policy.behaviour.config(n).mode for n in (*names, "privilege_escalation")} == {
        "reverse_shell": "prevention",
        "fileless": "notification",
        "ld_preload": "notification",
        "ptrace": "prevention",
        "wx_memory": "notification",
        "privilege_escalation": "prevention",
    }
    assert (policy.agent.console, policy.agent.log_quota_mb) == ("visible", 100)
    assert policy.forensics.retention_days == 14 and not policy.forensics.memory_dump
    assert policy.heartbeat_interval_s == 60


def test_every_setting_reaches_the_agent() -> None:
    from esmd.services.policies import hash_password

    rules = {
        "malware": {"unknown_file": "notify", "offline": "block"},
        "restrictions": {"allow_paths": ["/tmp/build-*"]},
        "child_process": {"allow_pairs": ["postgres:sh"]},
        "memfd_noexec": {"mode": "prevention"},
        "agent": {
            "heartbeat_interval_s": 300,
            "console": "root_only",
            "hide_user_alerts": True,
            "uninstall_password_hash": hash_password("stop it now"),
        },
        "forensics": {"memory_dump": True, "quota_mb": 5},
    }
    policy = compile_policy(server_policy(rules))
    assert (policy.unknown_file, policy.offline) == ("notify", "block")
    assert policy.restrictions.allow.match("/tmp/build-1/cc") == "/tmp/build-*"
    assert policy.child_process.allow_pairs == (("postgres", "sh"),)
    assert policy.memfd_noexec.active
    assert policy.heartbeat_interval_s == 300
    assert policy.agent.console == "root_only" and policy.agent.user_alert_message is None
    assert policy.agent.password_matches("stop it now")
    assert not policy.agent.password_matches("guess")
    assert policy.forensics.memory_dump and policy.forensics.quota_mb == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"agent": {"console": "loud"}}, "agent.console must be one of visible, root_only"),
        ({"agent": {"log_quota_mb": 0}}, "agent.log_quota_mb must be an integer from 1"),
        ({"agent": {"uninstall_password_hash": "md5$x"}}, "not a pbkdf2-sha256 hash"),
        ({"forensics": {"memory_dump": "yes"}}, "forensics.memory_dump must be true or false"),
        ({"forensics": []}, "forensics must be an object"),
    ],
)
def test_bad_settings_refuse_the_whole_policy(change: dict[str, Any], message: str) -> None:
    wire = server_policy()
    for block, value in change.items():
        wire[block] = {**wire[block], **value} if isinstance(value, dict) else value
    with pytest.raises(PolicyError, match=message):
        compile_policy(wire)
    wire = server_policy()
    wire["modules"]["malware"]["unknown_file"] = "quarantine"
    with pytest.raises(PolicyError, match=r"malware\.unknown_file must be one of"):
        compile_policy(wire)


def test_the_change_log_is_append_only_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policylog, "MAX_BYTES", 2000)
    monkeypatch.setattr(policylog, "KEEP", 5)
    for version in range(40):
        policylog.record(tmp_path, {"result": "applied", "to_version": version})
    entries = policylog.read(tmp_path, 100)
    assert 5 <= len(entries) < 40
    assert entries[-1]["to_version"] == 39
    versions = [e["to_version"] for e in entries]
    assert versions == sorted(versions)
    assert (tmp_path / policylog.LOG_FILE).stat().st_mode & 0o777 == 0o600
    old = compile_policy(server_policy()).wire
    new = compile_policy(server_policy({"forensics": {"quota_mb": 9}}, version=8)).wire
    assert old is not None and new is not None
    assert policylog.changed_sections(old, new) == ["forensics"]


def test_a_real_agent_applies_a_server_policy(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    token = admin.create_token(label="policy-test")["token"]
    enrolled = trapsd(
        "enroll", "--server", live_esm.url, "--token-file", "-", "--state-dir", state, stdin=token
    )
    assert enrolled.returncode == 0, enrolled.stderr
    agent_id = read_json(state / "identity.json")["agent_id"]
    admin.apply_policies(
        {
            "policies": [
                {
                    "name": "this-host",
                    "priority": 5,
                    "targets": {"include": {"hostnames": [hostinfo.hostname()]}},
                    "rules": {
                        "restrictions": {"mode": "off"},
                        "agent": {"console": "root_only"},
                        "forensics": {"retention_days": 3},
                    },
                }
            ]
        }
    )
    expected = admin.explain_agent_policy(agent_id)["version"]
    agents.start(state)

    def applied() -> list[dict[str, Any]] | None:
        run = trapsd("policy-log", "--state-dir", state, "-o", "json")
        entries: list[dict[str, Any]] = json.loads(run.stdout) if run.returncode == 0 else []
        done = [e for e in entries if e.get("to_version") == expected]
        return done or None

    (entry,) = wait_for(applied, 30)
    assert entry["result"] == "applied" and "forensics" in entry["changed"]
    saved = read_json(state / "policy.json")
    assert saved["version"] == expected and saved["forensics"]["retention_days"] == 3
    assert saved["modules"]["restrictions"]["enabled"] is False
    assert trapsd("checkin", "--state-dir", state).returncode == 0  # reports what it applied
    shown = admin.get_agent(agent_id)
    assert shown["policy_version"] == expected == shown["expected_policy_version"]
    assert shown["policy_drift"] is False and shown["health"] == "connected"
    from trapsd.control import call

    via_socket = call(state, {"cmd": "policy-log"}, 10)
    assert via_socket["ok"] and via_socket["entries"][-1]["to_version"] == expected
    table = trapsd("policy-log", "--state-dir", state).stdout
    assert f"-> {expected}" in table and "applied" in table

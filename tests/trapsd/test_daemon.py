"""The daemon's wiring, in-process: policy on/off, detections into the outbox, restart.

The ESM is unreachable here on purpose: enforcement must not depend on it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_helpers import ROOT_ONLY, free_url, make_binary, policy_for, wait_for

from trapsd.config import AgentSettings
from trapsd.daemon import Agent
from trapsd.identity import Identity, save_identity

pytestmark = [pytest.mark.timeout(60, method="thread")]


@pytest.fixture
def agent(settings: AgentSettings) -> Iterator[Agent]:
    save_identity(settings.state_dir, Identity("agent-1", "secret", [free_url()]))
    umask = os.umask(0o022)
    os.umask(umask)
    daemon = Agent(settings)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.shutdown()  # stops the exec sensor first: the host never waits on us
        os.umask(umask)


def test_status_file_and_module_state(agent: Agent, settings: AgentSettings) -> None:
    status = json.loads((settings.state_dir / "status.json").read_text())
    assert (status["agent_id"], status["running"], status["pid"]) == ("agent-1", True, os.getpid())
    modules = {m["name"]: m for m in status["modules"]}
    behaviour = ["reverse_shell", "fileless", "ld_preload", "ptrace", "wx_memory"]
    behaviour.append("privilege_escalation")
    assert list(modules) == ["malware", "restrictions", "child_process", "memfd_noexec", *behaviour]
    engine = {name: modules.pop(name) for name in behaviour}  # a real engine in this process
    if os.geteuid() == 0:
        assert engine["ptrace"]["mechanism"] == "proc-connector"
        assert engine["wx_memory"]["mechanism"] == "maps-scan"
        assert all(m["healthy"] for m in engine.values()), engine
    assert {m["mode"] for m in engine.values()} == {"prevention", "notification"}
    assert (modules["memfd_noexec"]["enabled"], modules["memfd_noexec"]["healthy"]) == (False, True)
    del modules["memfd_noexec"]  # off by default: not an exec module
    # the shipped defaults: restrictions notify, the rest prevent
    modes = {name: m["mode"] for name, m in modules.items()}
    assert modes == {
        "malware": "prevention",
        "restrictions": "notification",
        "child_process": "prevention",
    }
    expected = "fanotify" if os.geteuid() == 0 else "psutil-poll"
    assert {m["mechanism"] for m in modules.values()} == {expected}
    if os.geteuid() == 0:
        assert all(m["healthy"] for m in modules.values()), modules
    else:  # they cannot decide before execution
        assert not modules["child_process"]["healthy"]
        assert "cannot decide before execution" in modules["child_process"]["detail"]
    for name in ("status.json", "outbox.db", "trapsd.lock"):
        assert (settings.state_dir / name).stat().st_mode & 0o077 == 0, name


def test_the_policy_switches_the_module_off_and_on(agent: Agent) -> None:
    agent.apply_policy(policy_for([], enabled=False, version=2))
    assert agent.sensor is None  # every exec module is off: no sensor at all
    for module in agent.module_states()[:3]:
        assert (module["enabled"], module["mechanism"], module["healthy"]) == (False, "none", True)
        assert module["detail"] == "disabled by policy"
    agent.apply_policy(policy_for([], version=3))
    assert agent.sensor is not None and agent.module_states()[0]["enabled"]


@ROOT_ONLY
@pytest.mark.root
def test_a_prevented_exec_lands_in_the_outbox_and_the_policy_survives_restart(
    agent: Agent, settings: AgentSettings, tmp_path: Path
) -> None:
    evil, sha256 = make_binary(tmp_path, "true", "evil-true")
    agent.apply_policy(policy_for([sha256], version=5))
    with pytest.raises(PermissionError):
        subprocess.run([str(evil)], timeout=10)
    wait_for(lambda: agent.outbox.depth == 1, 5)
    (event,) = agent.outbox.take(5)
    assert (event["action"], event["sha256"], event["user"]) == ("prevented", sha256, "root")
    agent.shutdown()
    status = json.loads((settings.state_dir / "status.json").read_text())
    assert not status["running"] and status["outbox_depth"] == 1

    again = Agent(settings)
    try:
        again.start()
        assert again.policy.version == 5  # enforced before any contact with the ESM
        with pytest.raises(PermissionError):
            subprocess.run([str(evil)], timeout=10)
        wait_for(lambda: again.outbox.depth == 2, 5)
    finally:
        again.shutdown()

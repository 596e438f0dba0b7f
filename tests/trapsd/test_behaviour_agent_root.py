"""The behaviour engine's plumbing with a real ``trapsd run`` (root): the process tree, the
polling fallback and the local inspection verbs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from agent_helpers import ROOT_ONLY, Agents, trapsd, wait_for
from behaviour_helpers import (
    cli_json,
    killed,
    module_state,
    named_copy,
    spawn,
    start_agent,
    tcp_pair,
    wait_event,
)

pytestmark = [ROOT_ONLY, pytest.mark.root, pytest.mark.timeout(90, method="thread")]
PREVENT = {"enabled": True, "mode": "prevention"}
NOTIFY = {"enabled": True, "mode": "notification"}


def test_polling_fallback_is_reported_degraded_and_still_catches_a_reverse_shell(
    agents: Agents, tmp_path: Path, procs: list[subprocess.Popen[bytes]]
) -> None:
    state = tmp_path / "agent"
    env = {"TRAPSD_BEHAVIOUR_MECHANISM": "psutil-poll", "TRAPSD_POLL_INTERVAL_S": "0.2"}
    start_agent(agents, state, {"reverse_shell": PREVENT, "ptrace": NOTIFY}, env)
    shell_state = module_state(state, "reverse_shell")
    assert shell_state["mechanism"] == "psutil-poll+fd-scan" and not shell_state["healthy"]
    assert "polling" in shell_state["detail"]
    assert module_state(state, "fileless")["detail"] == "disabled by policy"
    client, server = tcp_pair()
    with client, server:
        shell = spawn(procs, "bash", "-i", stdin=client, stdout=client, stderr=client)
        assert killed(shell)
    assert wait_event(state, "reverse_shell", shell.pid)["details"]["mechanism"] == "psutil-poll"


def test_inspection_verbs(agents: Agents, tmp_path: Path, built: dict[str, Path]) -> None:
    state = tmp_path / "agent"
    guarded = named_copy(built["dummy"], tmp_path, "traps-guarded")
    ptrace = {**PREVENT, "protected": [guarded.name]}
    agent_pid = start_agent(agents, state, {"ptrace": ptrace, "malware": NOTIFY})
    policy = cli_json("policy", "--state-dir", state)
    modules = {m["name"]: m for m in policy["modules"]}
    assert modules["ptrace"]["mode"] == "prevention" and modules["ptrace"]["healthy"]
    assert modules["ptrace"]["mechanism"] == "proc-connector"
    assert modules["wx_memory"]["detail"] == "disabled by policy"
    assert policy["policy_version"] == 7 and policy["behaviour"]["ptrace_protected"] == [
        guarded.name
    ]
    processes = cli_json("processes", "--state-dir", state)
    assert agent_pid in [p["pid"] for p in processes["processes"]]
    assert processes["mechanism"] == "proc-connector" and processes["tracked"] > 10
    every = cli_json("processes", "--all", "--state-dir", state)
    assert os.getpid() in [p["pid"] for p in every["processes"]]
    # Only the threads every exec waits for may preempt the host's work (trapsd.scheduling).
    threads = cli_json("status", "--state-dir", state)["threads"]
    wanted = {
        "fanotify-verdict",
        "fanotify-watchdog",
        "MainThread",
        "proctree",
        "behaviour",
        "comms",
    }
    policies = {
        name: os.sched_getscheduler(int(t)) for t, name in threads.items() if name in wanted
    }
    assert policies["fanotify-verdict"] == policies["fanotify-watchdog"] == os.SCHED_OTHER
    assert {policies[name] for name in ("MainThread", "proctree", "behaviour", "comms")} == {
        os.SCHED_BATCH
    }

    verdict = cli_json("hash", guarded, "--state-dir", state)
    assert (verdict["verdict"], verdict["source"]) == ("unknown", "not in the policy")
    table = trapsd("policy", "--state-dir", state)
    assert table.returncode == 0 and "ptrace" in table.stdout
    missing = trapsd("hash", tmp_path / "nope", "--state-dir", state)
    assert missing.returncode == 2 and missing.stderr.startswith("trapsd: error: ")
    assert missing.stderr.count("\n") == 1
    bad = trapsd("events", "--limit", "0", "--state-dir", state)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    no_id = trapsd("forensics", "show", "--state-dir", state)
    assert no_id.returncode == 2 and "bundle ID" in no_id.stderr

    agents.stop_all()  # the daemon is down: hash and forensics read the state files
    offline = cli_json("hash", guarded, "--state-dir", state)
    assert offline["verdict"] == "unknown" and offline["daemon"] == "not running"
    assert cli_json("forensics", "list", "--state-dir", state) == {"bundles": []}
    down = trapsd("events", "--state-dir", state)
    assert down.returncode == 1 and "not running" in down.stderr


def test_the_process_tree_follows_fork_exec_uid_and_exit_and_resyncs() -> None:
    from trapsd.behaviour.proctree import ProcTree
    from trapsd.behaviour.source import ConnectorSource, WorkQueue

    tree = ProcTree()
    work = WorkQueue(10_000)
    source = ConnectorSource(tree, work, lambda kind: True)
    source.start()
    try:
        assert os.getpid() in tree.nodes  # resynced from /proc at start
        child = subprocess.Popen(["sleep", "30"], user=65534)
        node = wait_for(lambda: tree.get(child.pid) or None, 5)
        wait_for(lambda: tree.get(child.pid).exe.endswith("/sleep"), 5)  # type: ignore[union-attr]
        assert (node.ppid, tree.get(child.pid).creds.ruid) == (os.getpid(), 65534)  # type: ignore[union-attr]
        assert child.pid in tree.descendants(os.getpid())
        assert tree.ancestors(child.pid)[0] == os.getpid()
        child.kill()
        child.wait()
        wait_for(lambda: child.pid not in tree.nodes, 5)
        kinds = {item[0] for item in work.take(0) if item[1] == child.pid}
        assert {"exec", "uid"} <= kinds
        before = tree.resyncs
        source._resync()  # what ENOBUFS triggers
        assert tree.resyncs == before + 1 and source.counts["resyncs"] == 1
        assert list(work.take(0)) == [("sweep",)]
    finally:
        source.stop()


def test_a_tree_kill_reaches_children_the_process_tree_has_not_read_yet() -> None:
    """Forks may wait on the later socket (or a storm's timer) before the tree has them: the
    kill of a tree also walks /proc/PID/task/*/children."""
    from trapsd.behaviour.engine import BehaviourEngine
    from trapsd.behaviour.probes import descendants
    from trapsd.config import AgentSettings
    from trapsd.policy import default_policy

    engine = BehaviourEngine(AgentSettings(), default_policy(), lambda detection: None)
    assert len(engine.tree) == 0  # never started: it knows no process at all
    shell = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & sleep 30 & (sleep 30 & wait) & wait"])
    try:
        wait_for(lambda: len(descendants(shell.pid)) >= 4, 5)
        family = descendants(shell.pid)
        action, error = engine._kill(shell.pid, tree=True)
        assert (action, error) == ("killed", "")
        assert killed(shell, 5)
        wait_for(lambda: not any(alive(pid) for pid in family), 5)
    finally:
        if shell.poll() is None:
            shell.kill()
            shell.wait()


def test_the_descendants_of_a_process_that_exited_are_still_killed() -> None:
    from trapsd.behaviour.killing import kill_all

    orphan = subprocess.Popen(["sleep", "30"])
    try:
        gone = 2**22 + 1  # above any pid_max: never a process
        assert kill_all([gone, orphan.pid]) == ("notified", "exited before the kill")
        assert killed(orphan, 5)
        assert kill_all([gone]) == ("notified", "exited before the kill")
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, reaped by nobody here but init, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False

"""Local inspection verbs (cytool-like): events, processes, policy, hash, forensics.

:func:`handle` answers them inside the daemon (control socket: root or the configured group);
:func:`run` is the command-line side, which renders a table or ``-o json``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from trapsapi.errors import ExitCode, TrapsError, UsageError
from trapsd.forensics import forensics_dir, load_bundle, summaries
from trapsd.policy import Policy, load_policy

if TYPE_CHECKING:
    from trapsd.daemon import Agent

MAX_EVENTS = 200
MAX_TREE = 5000


class NotFoundError(TrapsError):
    exit_code = ExitCode.NOT_FOUND


# --- daemon side ------------------------------------------------------------------------------
def hash_verdict(
    policy: Policy, sha256: str, learnt: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The local verdict about a SHA-256 and where it comes from (``learnt``: what the
    running agent learnt since its policy, from the ESM or its own analysis)."""
    digest = bytes.fromhex(sha256)
    if digest in policy.allowed:
        verdict, source = "allowed", "policy allowed_hashes"
    elif digest in policy.blocked:
        verdict, source = "blocked", "policy blocked_hashes"
    elif learnt is not None and learnt[0] != "unknown":
        verdict, source = learnt
    else:
        verdict, source = "unknown", "not in the policy"
    malware = policy.malware
    return {
        "sha256": sha256,
        "verdict": verdict,
        "source": source,
        "policy_version": policy.version,
        "malware_module": malware.mode if malware.enabled else "disabled",
    }


def _processes(agent: Agent, everything: bool) -> dict[str, Any]:
    engine = agent.behaviour
    if engine is None:
        return {"ok": False, "error": agent.behaviour_error or "behaviour engine not running"}
    rules = agent.policy.behaviour
    rows: list[dict[str, Any]] = []
    for node in sorted(engine.tree.snapshot(), key=lambda n: n.pid):
        guards = [
            name
            for name, on in (
                ("ptrace", node.pid == engine.own_pid or rules.ptrace_protects(node.exe)),
                ("wx_memory", node.pid == engine.own_pid or rules.wx_protects(node.exe)),
            )
            if on
        ]
        if guards or everything:
            rows.append(
                {
                    "pid": node.pid,
                    "ppid": node.ppid,
                    "exe": node.exe,
                    "uids": [node.creds.ruid, node.creds.euid, node.creds.suid],
                    "protected_by": guards,
                }
            )
        if len(rows) >= MAX_TREE:
            break
    source = engine.source
    return {
        "ok": True,
        "mechanism": source.mechanism if source else "none",
        "tracked": len(engine.tree),
        "stats": engine.stats(),
        "processes": rows,
    }


def handle(agent: Agent, request: dict[str, Any]) -> dict[str, Any] | None:
    """The reply to an inspection command, or None when it is not one."""
    command = request.get("cmd")
    if command == "events":
        limit = request.get("limit", 50)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_EVENTS:
            return {"ok": False, "error": f"limit must be 1..{MAX_EVENTS}", "exit_code": 2}
        return {"ok": True, "events": list(agent.recent_events)[-limit:][::-1]}
    if command == "processes":
        return _processes(agent, bool(request.get("all")))
    if command == "policy":
        policy = agent.policy
        return {
            "ok": True,
            "policy_version": policy.version,
            "heartbeat_interval_s": policy.heartbeat_interval_s,
            "blocked_hashes": len(policy.blocked),
            "allowed_hashes": len(policy.allowed),
            "modules": agent.module_states(),
            "behaviour": _behaviour_summary(policy),
        }
    if command == "hash":
        sha256 = request.get("sha256")
        if not isinstance(sha256, str) or len(sha256) != 64:
            return {"ok": False, "error": "sha256: expected 64 hex digits", "exit_code": 2}
        try:
            learnt = agent.verdicts.lookup(bytes.fromhex(sha256)) if agent.verdicts else None
            return {"ok": True, **hash_verdict(agent.policy, sha256.lower(), learnt)}
        except ValueError:
            return {"ok": False, "error": "sha256: expected 64 hex digits", "exit_code": 2}
    if command == "forensics":
        return forensics_reply(agent.state_dir, request)
    return None


def _behaviour_summary(policy: Policy) -> dict[str, Any]:
    b = policy.behaviour
    return {
        "shells": list(b.shells),
        "ld_preload_trusted_dirs": list(b.trusted_lib_dirs),
        "ptrace_protected": list(b.ptrace_protected),
        "wx_protected": list(b.wx_protected),
        "wx_exclude": list(b.wx_exclude),
        "escalation_tools": list(b.escalation_tools),
        "escalation_trusted_dirs": list(b.trusted_bin_dirs),
    }


def forensics_reply(state_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    directory = forensics_dir(state_dir)
    if request.get("action") == "list":
        return {"ok": True, "bundles": summaries(directory)}
    bundle_id = request.get("id")
    bundle = load_bundle(directory, bundle_id) if isinstance(bundle_id, str) else None
    if bundle is None:
        return {"ok": False, "error": f"no forensics bundle {bundle_id!r}", "exit_code": 5}
    return {"ok": True, "bundle": bundle}


# --- command-line side ------------------------------------------------------------------------
def _call(state_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    from trapsd.control import call

    reply = call(state_dir, request, 30)
    if not reply.get("ok"):
        code = reply.get("exit_code") or ExitCode.ERROR
        error = NotFoundError if code == ExitCode.NOT_FOUND else TrapsError
        exc = error(str(reply.get("error")))
        if code == ExitCode.USAGE:
            exc = UsageError(str(reply.get("error")))
        raise exc
    return reply


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    return digest.hexdigest()


def run(command: str, args: Any, state_dir: Path, out: TextIO | None = None) -> int:
    """``trapsd events|processes|policy|hash|forensics``; the daemon answers."""
    from trapsd.control import DaemonNotRunning

    out = out or sys.stdout
    if command == "hash":
        sha256 = _sha256_file(Path(args.file))
        try:
            reply = _call(state_dir, {"cmd": "hash", "sha256": sha256})
        except DaemonNotRunning:  # the saved policy says the same (root can read it)
            policy = load_policy(state_dir)
            if policy is None:
                raise
            reply = {"ok": True, **hash_verdict(policy, sha256), "daemon": "not running"}
        reply["file"] = str(args.file)
    elif command == "forensics":
        request = {"cmd": "forensics", "action": args.action, "id": args.id}
        if args.action == "show" and not args.id:
            raise UsageError("forensics show: give a bundle ID (see trapsd forensics list)")
        try:
            reply = _call(state_dir, request)
        except DaemonNotRunning:
            reply = forensics_reply(state_dir, request)
            if not reply.get("ok"):
                raise NotFoundError(str(reply["error"])) from None
    elif command == "events":
        reply = _call(state_dir, {"cmd": "events", "limit": args.limit})
    elif command == "processes":
        reply = _call(state_dir, {"cmd": "processes", "all": args.all})
    else:
        reply = _call(state_dir, {"cmd": "policy"})
    reply.pop("ok", None)
    if args.output == "json":
        out.write(json.dumps(reply, indent=2, sort_keys=True) + "\n")
    else:
        _render(command, args, reply, out)
    return ExitCode.OK


def _render(command: str, args: Any, reply: dict[str, Any], out: TextIO) -> None:
    if command == "hash":
        out.write(
            f"{reply['sha256']}  {reply['file']}\n"
            f"verdict {reply['verdict']} ({reply['source']}, policy version "
            f"{reply['policy_version']}, malware module {reply['malware_module']})\n"
        )
    elif command == "events":
        for e in reply["events"]:
            out.write(
                f"{e['time'][:19]}  {e['module']:<20} {e['action']:<9} {e['severity']:<8} "
                f"pid {e['pid']}  {e['process_path']}  {e['details'].get('rule', '')}\n"
            )
        if not reply["events"]:
            out.write("no security events since the daemon started\n")
    elif command == "processes":
        out.write(f"{reply['tracked']} processes tracked via {reply['mechanism']}\n")
        for p in reply["processes"]:
            guards = ",".join(p["protected_by"]) or "-"
            out.write(f"{p['pid']:>7} {p['ppid']:>7}  {guards:<17} {p['exe']}\n")
    elif command == "policy":
        out.write(
            f"policy version {reply['policy_version']}, {reply['blocked_hashes']} blocked / "
            f"{reply['allowed_hashes']} allowed hashes, heartbeat "
            f"{reply['heartbeat_interval_s']} s\n"
        )
        for m in reply["modules"]:
            mode = m["mode"] if m["enabled"] else "disabled"
            health = "ok" if m["healthy"] else "DEGRADED"
            out.write(
                f"  {m['name']:<21} {mode:<12} {m['mechanism']:<22} {health:<8} {m['detail']}\n"
            )
    elif args.action == "list":
        for b in reply["bundles"]:
            out.write(f"{b['id']}  {b['created']}  {b['bytes']} bytes\n")
        if not reply["bundles"]:
            out.write("no forensics bundles\n")
    else:
        out.write(json.dumps(reply["bundle"], indent=2, sort_keys=True) + "\n")

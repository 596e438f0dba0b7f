"""What each action type does on the agent: ``run(host, type, params) -> (outcome, result,
detail)``. An executor raises :class:`ActionFailed` (or any OSError) for a failed outcome."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from trapsapi.agent_client import UploadKind
from trapsapi.wire_actions import MAX_UPLOAD_BYTES, ForensicUpload, LogUpload
from trapsd.actions import isolation, quarantine
from trapsd.actions.logs import LogRing, bundle, log_sections
from trapsd.actions.process import KillRefused, kill
from trapsd.actions.scan import find_by_hash, scan
from trapsd.actions.store import ActionStore
from trapsd.config import AgentSettings
from trapsd.files import read_json, write_json
from trapsd.forensics import forensics_dir, select_bundles

ISOLATION_FILE = "isolation.json"
HISTORY_DIRS = ("history", "forensics")
"""Local event history and forensic records (kept by other modules); clear_history empties
them. The outbox of unsent events is never touched."""
DEFAULT_SEARCH_FILES = 200_000


class ActionFailed(Exception):
    pass


class Host(Protocol):
    """What the actions need from the running agent (``trapsd.daemon.Agent``)."""

    settings: AgentSettings
    state_dir: Path
    policy: Any

    def checkin_now(self, timeout: float) -> dict[str, Any]: ...
    def status(self, running: bool = True) -> dict[str, Any]: ...
    def servers(self) -> list[str]: ...
    def refresh_local_blocks(self) -> None: ...
    def upload(
        self, action_id: str, kind: UploadKind, uploads: Iterable[LogUpload | ForensicUpload]
    ) -> Iterator[dict[str, Any]]: ...
    def uninstall(self) -> None: ...


@dataclasses.dataclass
class Context:
    host: Host
    store: ActionStore
    ring: LogRing
    action_id: str


Outcome = tuple[str, dict[str, Any], str]
Executor = Callable[[Context, dict[str, Any]], Outcome]


def _ok(result: dict[str, Any], detail: str = "") -> Outcome:
    return "succeeded", result, detail


def _checkin(ctx: Context, _params: dict[str, Any]) -> Outcome:
    result = ctx.host.checkin_now(ctx.host.settings.request_timeout_s * 3 + 5)
    if not result.get("ok"):
        raise ActionFailed(f"check-in failed: {result.get('error')}")
    return _ok({"server": result.get("server"), "policy_version": result.get("policy_version")})


def _scan(ctx: Context, params: dict[str, Any]) -> Outcome:
    policy = ctx.host.policy
    result = scan(
        list(params["paths"]),
        policy.blocked,
        policy.allowed,
        int(params.get("max_files", 100_000)),
        float(params.get("max_seconds", 300)),
        ctx.host.settings.hash_max_bytes,
    )
    return _ok(result, f"{result['hashed']} executables hashed, {result['malware']} malware")


def _quarantine(ctx: Context, params: dict[str, Any]) -> Outcome:
    sha256 = params.get("sha256")
    reason = str(params.get("reason") or f"action {ctx.action_id}")
    if params.get("path"):
        paths = [str(params["path"])]
    else:
        paths = find_by_hash(list(params["search_paths"]), str(sha256), DEFAULT_SEARCH_FILES, 300)
        if not paths:
            raise ActionFailed(f"no file with sha256 {sha256} under the search paths")
    entries = [quarantine.quarantine_file(ctx.host.state_dir, p, reason, sha256) for p in paths]
    ctx.host.refresh_local_blocks()
    return _ok(
        {"quarantined": [{k: e[k] for k in ("id", "path", "sha256", "time")} for e in entries]},
        f"{len(entries)} file(s) quarantined",
    )


def _restore(ctx: Context, params: dict[str, Any]) -> Outcome:
    entry = quarantine.restore(ctx.host.state_dir, str(params["quarantine_id"]))
    ctx.host.refresh_local_blocks()
    return _ok({"quarantine_id": entry["id"], "path": entry["path"]}, f"restored {entry['path']}")


def _kill(ctx: Context, params: dict[str, Any]) -> Outcome:
    try:
        result = kill(
            int(params["pid"]),
            params.get("start_time"),
            params.get("name"),
            bool(params.get("tree", True)),
        )
    except KillRefused as exc:
        raise ActionFailed(str(exc)) from None
    return _ok(result, f"killed {len(result['killed'])} process(es)")


def _clear_history(ctx: Context, _params: dict[str, Any]) -> Outcome:
    removed = {"actions": ctx.store.clear_history(), "log_lines": ctx.ring.clear()}
    for name in HISTORY_DIRS:
        directory = ctx.host.state_dir / name
        removed[name] = (
            sum(1 for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else 0
        )
        if directory.is_dir():
            shutil.rmtree(directory)
    return _ok(removed, "local history cleared (unsent events kept)")


def _retrieve_logs(ctx: Context, params: dict[str, Any]) -> Outcome:
    host = ctx.host
    actions = [a.public() for a in ctx.store.history() + ctx.store.unfinished()]
    sections = log_sections(host.status(), host.settings, actions, host.state_dir)
    data, lines = bundle(sections, list(ctx.ring.lines), int(params.get("max_bytes", 1 << 20)))
    sha256 = hashlib.sha256(data).hexdigest()
    body: LogUpload = {"content_b64": base64.b64encode(data).decode(), "sha256": sha256}
    for _ack in host.upload(ctx.action_id, "logs", [body]):
        pass
    return _ok({"size": len(data), "sha256": sha256, "log_lines": lines})


def _isolate(ctx: Context, params: dict[str, Any]) -> Outcome:
    addresses = isolation.server_addresses(ctx.host.servers())
    isolation.isolate(addresses)
    grace_s = int(params.get("grace_s", 120))
    state = {
        "active": True,
        "since": time.time(),
        "addresses": [str(a) for a in addresses],
        "grace_s": grace_s,
    }
    write_json(ctx.host.state_dir / ISOLATION_FILE, state)
    if not confirm(ctx.host, grace_s):
        raise ActionFailed(f"rolled back: no ESM answered within {grace_s} s of isolating")
    return _ok({"isolated": True, "reachable": state["addresses"]}, "isolated")


def confirm(host: Host, grace_s: float) -> bool:
    """Keep the isolation only if an ESM answers within ``grace_s``; else undo it."""
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        timeout = max(1.0, min(host.settings.request_timeout_s, deadline - time.monotonic()))
        if host.checkin_now(timeout + 2).get("ok"):
            return True
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
    undo_isolation(host.state_dir)
    return False


def undo_isolation(state_dir: Path) -> int:
    removed = isolation.unisolate()
    write_json(state_dir / ISOLATION_FILE, {"active": False, "since": time.time()})
    return removed


def is_isolated(state_dir: Path) -> bool:
    value = read_json(state_dir / ISOLATION_FILE)
    return isinstance(value, dict) and bool(value.get("active"))


def _unisolate(ctx: Context, _params: dict[str, Any]) -> Outcome:
    return _ok({"isolated": False, "removed": undo_isolation(ctx.host.state_dir)}, "un-isolated")


def _uninstall(ctx: Context, _params: dict[str, Any]) -> Outcome:
    # The dispatcher reports this result first, then calls host.uninstall().
    return _ok({"uninstalling": True}, "the agent stops and removes its state")


def _forensics(ctx: Context, params: dict[str, Any]) -> Outcome:
    ids = [str(i) for i in [params.get("event_id"), *params.get("event_ids", [])] if i]
    ids += [str(i) for i in params.get("bundle_ids", [])]
    chosen, missing = select_bundles(
        forensics_dir(ctx.host.state_dir), ids, params.get("recent"), _since(params.get("since"))
    )
    budget = int(params.get("max_bytes", 16 * 1024 * 1024))
    too_large: list[str] = []
    over_budget: list[str] = []
    sent: list[dict[str, Any]] = []

    def uploads() -> Iterator[ForensicUpload]:
        nonlocal budget
        for bundle_id, path, st in chosen:
            if st.st_size > MAX_UPLOAD_BYTES:
                too_large.append(bundle_id)
                continue
            if st.st_size > budget:
                over_budget.append(bundle_id)
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # evicted by the quota meanwhile
                missing.append(bundle_id)
                continue
            budget -= len(data)
            sha256 = hashlib.sha256(data).hexdigest()
            sent.append({"bundle_id": bundle_id, "size": len(data), "sha256": sha256})
            yield {
                "bundle_id": bundle_id,
                "event_id": bundle_id if _is_uuid(bundle_id) else None,
                "created_at": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(),
                "content_b64": base64.b64encode(data).decode(),
                "sha256": sha256,
            }

    for index, ack in enumerate(ctx.host.upload(ctx.action_id, "forensics", uploads())):
        sent[index].update(id=ack["id"], duplicate=ack["duplicate"])  # appended before the yield
    if ids and not sent:
        reasons = [("missing", missing), ("too large", too_large), ("over budget", over_budget)]
        why = "; ".join(f"{name}: {', '.join(found)}" for name, found in reasons if found)
        raise ActionFailed(f"no forensic bundle sent ({why})"[:1000])
    result = {
        "sent": sent,
        "missing": missing,
        "too_large": too_large,
        "over_budget": over_budget,
        "bytes": sum(item["size"] for item in sent),
    }
    left = len(missing) + len(too_large) + len(over_budget)
    return _ok(result, f"{len(sent)} bundle(s) sent" + (f", {left} not sent" if left else ""))


def _since(value: Any) -> dt.datetime | None:
    """The ``since`` parameter (ISO-8601; without a zone: UTC)."""
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise ActionFailed(f"since: {value!r} is not an ISO-8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


EXECUTORS: dict[str, Executor] = {
    "checkin": _checkin,
    "scan": _scan,
    "retrieve_logs": _retrieve_logs,
    "retrieve_forensics": _forensics,
    "quarantine": _quarantine,
    "restore": _restore,
    "kill_process": _kill,
    "clear_history": _clear_history,
    "isolate": _isolate,
    "unisolate": _unisolate,
    "uninstall": _uninstall,
}

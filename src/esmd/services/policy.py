"""The effective agent policy, cached per process and revalidated by version on every use.

Every change that affects the policy (a policy created, updated or deleted; a verdict changed)
bumps ``policy_state.version`` in its own transaction. A check-in reads that one row (riding
on the authentication lookup) and reloads the policies and hashes only when the version
moved, so any number of esmd processes sharing the database stay consistent.

Per version, the effective policy of an agent depends only on which policies match it, in
which order: the cache maps that ordered list to the built ``AgentPolicy``, so a fleet of
thousands of hosts shares a handful of built policies. Matching costs ~10 µs per policy, so
the result is also remembered per target signature (hostname, OS, labels, group): a repeated
check-in costs one dict lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update

from esmd.db.tables import POLICY_STATE
from esmd.db.tables_policies import POLICIES
from esmd.services.policy_defaults import BUILTIN
from esmd.services.policy_resolve import (
    Resolution,
    StoredPolicy,
    Target,
    effective_settings,
    rank,
    unflatten,
)
from esmd.services.wake import policy_bumped
from trapsapi.enums import Mode
from trapsapi.models import AgentPolicy, AgentSettingsPolicy, ForensicsPolicy, ModulePolicy
from trapsapi.models_policies import BEHAVIOUR_MODULES

POLICY_ROW = 1
MAX_BUILT = 4096  # distinct (ordered) policy combinations kept per version
MAX_TARGETS = 65536  # agent target signatures remembered per version (~200 bytes each)
NO_TARGET = Target(hostname="")

_MODULE_FIELDS = {
    "malware": ("unknown_file", "offline"),
    "restrictions": ("paths", "allow_paths", "fstypes"),
    "child_process": ("parents", "children", "allow_pairs"),
}


def current_version(connection: Connection) -> int:
    version = connection.execute(
        select(POLICY_STATE.c.version).where(POLICY_STATE.c.id == POLICY_ROW)
    ).scalar_one_or_none()
    return int(version or 0)


def bump_version(connection: Connection) -> None:
    """Call inside the transaction of any change to what agents enforce."""
    connection.execute(
        update(POLICY_STATE)
        .where(POLICY_STATE.c.id == POLICY_ROW)
        .values(version=POLICY_STATE.c.version + 1)
    )
    # Waiting agents learn of it when this transaction commits (esmd.services.wake).
    policy_bumped(connection, current_version(connection))


def load_policies(connection: Connection) -> list[StoredPolicy]:
    rows = connection.execute(
        select(
            POLICIES.c.name,
            POLICIES.c.priority,
            POLICIES.c.enabled,
            POLICIES.c.targets,
            POLICIES.c.rules,
        ).order_by(POLICIES.c.name)
    ).all()
    return [StoredPolicy(r.name, r.priority, bool(r.enabled), r.targets, r.rules) for r in rows]


def _module(rules: Mapping[str, Any], extra: tuple[str, ...] = ()) -> ModulePolicy:
    mode = Mode(rules.get("mode", Mode.OFF))
    values = {name: rules.get(name) for name in extra}
    return ModulePolicy(
        enabled=mode is not Mode.OFF,
        mode=mode,
        user_alert=bool(rules.get("user_alert", False)),
        **values,
    )


def agent_policy(
    settings: Mapping[str, Any], version: int, heartbeat_s: int, hashes: tuple[list[str], ...]
) -> AgentPolicy:
    """The wire policy of a set of effective (flattened) settings."""
    rules = unflatten(settings)
    modules = {name: _module(rules.get(name, {}), extra) for name, extra in _MODULE_FIELDS.items()}
    behaviour = rules.get("behaviour", {})
    for name in BEHAVIOUR_MODULES:
        modules[name] = _module(behaviour.get(name, {}))
    memfd = rules.get("memfd_noexec", {})
    modules["memfd_noexec"] = ModulePolicy(
        enabled=memfd.get("mode", "off") != Mode.OFF, mode=Mode.PREVENTION, user_alert=False
    )
    agent = rules.get("agent", {})
    forensics = rules.get("forensics", {})
    blocked, allowed = hashes
    return AgentPolicy(
        version=version,
        heartbeat_interval_s=int(agent.get("heartbeat_interval_s") or heartbeat_s),
        modules=modules,
        blocked_hashes=blocked,
        allowed_hashes=allowed,
        agent=AgentSettingsPolicy(
            log_quota_mb=agent["log_quota_mb"],
            console=agent["console"],
            user_alert_message=None
            if agent.get("hide_user_alerts")
            else agent.get("user_alert_message", ""),
            uninstall_password_hash=agent.get("uninstall_password_hash"),
        ),
        forensics=ForensicsPolicy(**forensics),
    )


def load_hashes(connection: Connection) -> tuple[list[str], list[str]]:
    """(blocked, allowed): the hashes whose effective verdict (admin > feed) is enforced."""
    from esmd.services.verdicts import enforced_lists  # verdicts bumps versions: no cycle

    return enforced_lists(connection)


@dataclass
class Snapshot:
    """Everything of one policy version; built policies are added as agents need them."""

    version: int
    heartbeat_s: int
    policies: list[StoredPolicy]
    hashes: tuple[list[str], list[str]]
    built: dict[tuple[str, ...], AgentPolicy] = field(default_factory=dict)
    by_target: dict[tuple[Any, ...], AgentPolicy] = field(default_factory=dict)

    def resolve(self, target: Target) -> Resolution:
        return rank(self.policies, target)

    def cached(self, target: Target) -> AgentPolicy | None:
        return self.by_target.get(target.signature)

    def policy_for(self, target: Target) -> AgentPolicy:
        signature = target.signature
        policy = self.by_target.get(signature)
        if policy is not None:
            return policy
        resolution = self.resolve(target)
        key = resolution.key
        policy = self.built.get(key)
        if policy is None:
            settings = effective_settings(resolution.ranked, BUILTIN)
            policy = agent_policy(settings, self.version, self.heartbeat_s, self.hashes)
            if len(self.built) >= MAX_BUILT:
                self.built.clear()
            self.built[key] = policy
        if len(self.by_target) >= MAX_TARGETS:
            self.by_target.clear()
        self.by_target[signature] = policy
        return policy


def load_snapshot(connection: Connection, version: int, heartbeat_s: int) -> Snapshot:
    """Read after the version: content can then only be newer than its label, never older,
    so an agent is never told it is current while it is not."""
    return Snapshot(version, heartbeat_s, load_policies(connection), load_hashes(connection))


VISIBLE_WAIT_S = 2.0


def _visible(connection: Connection, version: int) -> int:
    """The version ``connection`` sees, after waiting up to 2 s for ``version`` to show.

    A version given from outside this transaction must not label older content: agents
    would be told they were current without the change. The wake channel now wakes readers
    only after the commit (``Notifier.on_checkin``), so this normally returns at once; it
    guards any other caller that learns a version early. PostgreSQL (read committed) reads
    each statement anew, so the wait ends when the commit lands; SQLite's writers wait for
    each other's commits."""
    visible = current_version(connection)
    deadline = time.monotonic() + VISIBLE_WAIT_S
    while visible < version and time.monotonic() < deadline:
        time.sleep(0.005)
        visible = current_version(connection)
    return visible


class PolicyCache:
    """The snapshot of the newest version this process has seen."""

    def __init__(self, heartbeat_interval_s: int) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self._snapshot: Snapshot | None = None
        self._lock = threading.Lock()

    def snapshot(self, connection: Connection, version: int | None = None) -> Snapshot:
        if version is None:
            version = current_version(connection)
        snap = self._snapshot
        if snap is not None and snap.version == version:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is None or snap.version != version:
                version = min(version, _visible(connection, version))
                snap = load_snapshot(connection, version, self.heartbeat_interval_s)
                if self._snapshot is None or self._snapshot.version < version:
                    self._snapshot = snap
        return snap

    def get(
        self, connection: Connection, version: int | None = None, target: Target = NO_TARGET
    ) -> AgentPolicy:
        """The effective policy of ``target`` at ``version`` (read now if not given)."""
        snap = self.snapshot(connection, version)
        policy = snap.cached(target)  # the hot path: no lock, one dict lookup
        if policy is not None:
            return policy
        with self._lock:
            return snap.policy_for(target)

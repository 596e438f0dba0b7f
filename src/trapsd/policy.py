"""The applied policy: validated from the server's (or policy.json's) wire form, saved and loaded.

The exec modules' rule types and the pure decisions made from them are in
:mod:`trapsd.exec_rules`; nothing here does I/O except :func:`load_policy`/:func:`save_policy`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trapsapi.enums import Mode
from trapsapi.wire import AgentPolicy
from trapsd.defaults import CHILD_PROCESS, MEMFD_NOEXEC, RESTRICTIONS, module_defaults
from trapsd.exec_rules import (
    MALWARE,
    ChildRules,
    ModuleConfig,
    PathList,
    Restrictions,
    is_glob,
)
from trapsd.files import read_json, write_json
from trapsd.policy_settings import (
    AgentConfig,
    ForensicsConfig,
    agent_config,
    file_action,
    forensics_config,
)
from trapsd.policy_settings import (
    PolicyError as PolicyError,
)

if TYPE_CHECKING:
    from trapsd.behaviour.rules import Behaviour

POLICY_FILE = "policy.json"
DEFAULT_HEARTBEAT_S = 3600
MIN_HEARTBEAT_S = 10  # whatever the server says: the footprint budget comes first
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclasses.dataclass(frozen=True)
class Policy:
    """A validated policy; hashes as 32-byte digests so a lookup costs one set probe."""

    version: int | None
    heartbeat_interval_s: int
    malware: ModuleConfig
    blocked: frozenset[bytes]
    allowed: frozenset[bytes]
    wire: Mapping[str, Any] | None = None
    restrictions: Restrictions = dataclasses.field(default_factory=lambda: _restrictions(None))
    child_process: ChildRules = dataclasses.field(default_factory=lambda: _child_rules(None))
    memfd_noexec: ModuleConfig = dataclasses.field(
        default_factory=lambda: _module(module_defaults(MEMFD_NOEXEC), MEMFD_NOEXEC)
    )
    behaviour: Behaviour = dataclasses.field(default_factory=lambda: _behaviour({}))
    unknown_file: str = "allow"
    offline: str = "allow"
    agent: AgentConfig = dataclasses.field(default_factory=AgentConfig)
    forensics: ForensicsConfig = dataclasses.field(default_factory=ForensicsConfig)

    @property
    def exec_active(self) -> bool:
        """Whether any module judges executions (the exec sensor is needed)."""
        return (
            self.malware.active
            or self.restrictions.config.active
            or self.child_process.config.active
        )

    @property
    def path_rules_active(self) -> bool:
        """Whether a verdict can depend on a file's path or name, not only on its contents."""
        return self.restrictions.config.active or self.child_process.config.active

    def same_rules(self, other: Policy) -> bool:
        return (
            self.malware,
            self.blocked,
            self.allowed,
            self.restrictions,
            self.child_process,
        ) == (
            other.malware,
            other.blocked,
            other.allowed,
            other.restrictions,
            other.child_process,
        )


def default_policy() -> Policy:
    """Before the first check-in: malware prevention on, nothing blocked yet, shipped defaults."""
    return Policy(None, DEFAULT_HEARTBEAT_S, ModuleConfig(), frozenset(), frozenset())


def _digests(values: Any, field: str) -> frozenset[bytes]:
    if not isinstance(values, list):
        raise PolicyError(f"policy: {field} must be a list")
    out: set[bytes] = set()
    for value in values:
        if not isinstance(value, str) or not _SHA256.match(value):
            raise PolicyError(f"policy: {field} holds {value!r}, not a SHA-256")
        out.add(bytes.fromhex(value))
    return frozenset(out)


def _module(data: Any, name: str) -> ModuleConfig:
    if data is None:
        return ModuleConfig()
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy: module {name!r} must be an object")
    mode = str(data.get("mode", Mode.PREVENTION))
    if mode not in set(Mode):
        raise PolicyError(f"policy: module {name!r} has unknown mode {mode!r}")
    return ModuleConfig(bool(data.get("enabled", True)), mode, bool(data.get("user_alert", False)))


def _merged(name: str, data: Any) -> dict[str, Any]:
    """The shipped defaults of ``name`` with the server's entry (if any) on top.

    A null field is not sent: the shipped default stays (the ESM sends every module field).
    """
    if data is not None and not isinstance(data, Mapping):
        raise PolicyError(f"policy: module {name!r} must be an object")
    given = {k: v for k, v in (data or {}).items() if v is not None}
    return {**module_defaults(name), **given}


def _strings(data: Mapping[str, Any], name: str, field: str) -> list[str]:
    values = data.get(field, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise PolicyError(f"policy: {name}.{field} must be a list of non-empty strings")
    return list(values)


def _restrictions(data: Any) -> Restrictions:
    merged = _merged(RESTRICTIONS, data)
    for field in ("paths", "allow_paths"):
        for entry in _strings(merged, RESTRICTIONS, field):
            if not entry.startswith("/") and not is_glob(entry):
                raise PolicyError(f"policy: {RESTRICTIONS}.{field}: {entry!r} is not absolute")
    return Restrictions(
        _module(merged, RESTRICTIONS),
        PathList.of(_strings(merged, RESTRICTIONS, "paths")),
        PathList.of(_strings(merged, RESTRICTIONS, "allow_paths")),
        frozenset(_strings(merged, RESTRICTIONS, "fstypes")),
    )


def _child_rules(data: Any) -> ChildRules:
    merged = _merged(CHILD_PROCESS, data)
    pairs: list[tuple[str, str]] = []
    for entry in _strings(merged, CHILD_PROCESS, "allow_pairs"):
        parent, sep, child = entry.partition(":")
        if not sep or not parent or not child:
            raise PolicyError(f"policy: {CHILD_PROCESS}.allow_pairs: {entry!r} is not PARENT:CHILD")
        pairs.append((parent, child))
    return ChildRules.of(
        _module(merged, CHILD_PROCESS),
        _strings(merged, CHILD_PROCESS, "parents"),
        _strings(merged, CHILD_PROCESS, "children"),
        pairs,
    )


def compile_policy(wire: Mapping[str, Any]) -> Policy:
    """Validate a policy from the server (or policy.json) completely before it is applied."""
    if not isinstance(wire, Mapping):
        raise PolicyError("policy: expected an object")
    version = wire.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise PolicyError("policy: version must be an integer")
    heartbeat = wire.get("heartbeat_interval_s", DEFAULT_HEARTBEAT_S)
    if not isinstance(heartbeat, int) or isinstance(heartbeat, bool) or heartbeat < 0:
        raise PolicyError("policy: heartbeat_interval_s must be a non-negative integer")
    modules = wire.get("modules")
    modules = {} if modules is None else modules
    if not isinstance(modules, Mapping):
        raise PolicyError("policy: modules must be an object")
    malware = modules.get(MALWARE)
    malware_actions = _merged(MALWARE, malware)
    return Policy(
        version=version,
        heartbeat_interval_s=max(heartbeat, MIN_HEARTBEAT_S) if heartbeat else DEFAULT_HEARTBEAT_S,
        malware=_module(malware, MALWARE),
        blocked=_digests(wire.get("blocked_hashes", []), "blocked_hashes"),
        allowed=_digests(wire.get("allowed_hashes", []), "allowed_hashes"),
        wire=dict(wire),
        restrictions=_restrictions(modules.get(RESTRICTIONS)),
        child_process=_child_rules(modules.get(CHILD_PROCESS)),
        memfd_noexec=_module(_merged(MEMFD_NOEXEC, modules.get(MEMFD_NOEXEC)), MEMFD_NOEXEC),
        behaviour=_behaviour(modules),
        unknown_file=file_action(malware_actions, "unknown_file"),
        offline=file_action(malware_actions, "offline"),
        agent=agent_config(wire.get("agent")),
        forensics=forensics_config(wire.get("forensics")),
    )


def _behaviour(modules: Mapping[str, Any]) -> Behaviour:
    from trapsd.behaviour.rules import compile_behaviour  # it builds on this module

    return compile_behaviour(modules)


def policy_path(state_dir: Path) -> Path:
    return state_dir / POLICY_FILE


def load_policy(state_dir: Path) -> Policy | None:
    """The last applied policy, so enforcement survives a restart without the server."""
    data = read_json(policy_path(state_dir))
    return None if data is None else compile_policy(data)


def save_policy(state_dir: Path, wire: AgentPolicy | Mapping[str, Any]) -> None:
    write_json(policy_path(state_dir), dict(wire))

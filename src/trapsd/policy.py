"""The applied policy and the pure verdict decisions made from it.

Nothing here does I/O except :func:`load_policy`/:func:`save_policy`, so every decision the
sensors make is unit-testable without a kernel.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trapsapi.enums import EventAction, Mode
from trapsapi.wire import AgentPolicy
from trapsd.defaults import CHILD_PROCESS, MEMFD_NOEXEC, RESTRICTIONS, module_defaults
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
MALWARE = "malware"
DEFAULT_HEARTBEAT_S = 3600
MIN_HEARTBEAT_S = 10  # whatever the server says: the footprint budget comes first
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")

ALLOW = "allow"
DENY = "deny"
NOTIFY = "notify"


@dataclasses.dataclass(frozen=True)
class ModuleConfig:
    enabled: bool = True
    mode: str = Mode.PREVENTION
    user_alert: bool = False

    @property
    def active(self) -> bool:
        return self.enabled and self.mode != Mode.OFF

    @property
    def verdict(self) -> str:
        """What a match means: DENY in prevention mode, NOTIFY (allow and report) otherwise."""
        return DENY if self.mode == Mode.PREVENTION else NOTIFY


_NEVER = re.compile(r"(?!)")


def _globs(patterns: Iterable[str]) -> re.Pattern[str]:
    """One compiled regex for a list of fnmatch globs (a probe costs one match)."""
    parts = [fnmatch.translate(p) for p in patterns if p]
    return re.compile("|".join(parts)) if parts else _NEVER


def _is_glob(entry: str) -> bool:
    return any(c in entry for c in "*?[")


def _first_prefix(prefixes: tuple[str, ...], path: str) -> str | None:
    for prefix in prefixes:
        if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
            return prefix
    return None


@dataclasses.dataclass(frozen=True)
class PathList:
    """Directory prefixes (everything below) and fnmatch globs on the full path."""

    prefixes: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()
    _compiled: re.Pattern[str] = _NEVER

    @classmethod
    def of(cls, entries: Iterable[str]) -> PathList:
        prefixes: list[str] = []
        globs: list[str] = []
        for entry in entries:
            if _is_glob(entry):
                globs.append(entry)
            else:
                prefixes.append(os.path.normpath(entry) if entry != "/" else "/")
        return cls(tuple(prefixes), tuple(globs), _globs(globs))

    def match(self, path: str) -> str | None:
        """The first entry that covers ``path`` (the rule to report), or None."""
        prefix = _first_prefix(self.prefixes, path)
        if prefix is not None:
            return prefix
        if self.globs and self._compiled.match(path):
            return next(g for g in self.globs if fnmatch.fnmatchcase(path, g))
        return None


@dataclasses.dataclass(frozen=True)
class Restrictions:
    """Execution from listed paths or filesystem types; the allow-list beats the block-list."""

    config: ModuleConfig
    paths: PathList = PathList()
    allow: PathList = PathList()
    fstypes: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class ChildRules:
    """Listed parent images may not start listed children (globs on base names)."""

    config: ModuleConfig
    parents: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    allow_pairs: tuple[tuple[str, str], ...] = ()
    _parents: re.Pattern[str] = _NEVER
    _children: re.Pattern[str] = _NEVER

    @classmethod
    def of(
        cls,
        config: ModuleConfig,
        parents: Iterable[str],
        children: Iterable[str],
        allow_pairs: Iterable[tuple[str, str]] = (),
    ) -> ChildRules:
        parents, children = tuple(parents), tuple(children)
        return cls(config, parents, children, tuple(allow_pairs), _globs(parents), _globs(children))

    def is_listed_child(self, name: str) -> bool:
        return self.config.active and self._children.match(name) is not None

    def is_listed_parent(self, name: str) -> bool:
        return self._parents.match(name) is not None


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
            if not entry.startswith("/") and not _is_glob(entry):
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


def decide(policy: Policy, digest: bytes, _path: str = "") -> str:
    """The malware module's verdict from the policy's hash lists alone.

    An allow-listed hash always runs; a blocked one is denied in prevention mode and reported
    in notification mode; anything else runs. The agent judges with
    :class:`trapsd.verdicts.Verdicts`, which adds learnt verdicts and the unknown-file action.
    """
    if not policy.malware.active or digest in policy.allowed or digest not in policy.blocked:
        return ALLOW
    return DENY if policy.malware.mode == Mode.PREVENTION else NOTIFY


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One module's non-allow decision about one execution."""

    module: str
    decision: str  # DENY or NOTIFY
    rule: str
    parent_image: str | None = None


ParentImages = Callable[[], Iterable[tuple[str, str]]]
"""Lazily: (image path, how it was found) of the process that execs, then of its parent."""

DELETED = " (deleted)"


def image_name(path: str) -> str:
    """The base name of an executable path as /proc shows it (an upgraded binary is deleted)."""
    if path.endswith(DELETED):
        path = path[: -len(DELETED)]
    return path.rpartition("/")[2]


def decide_restriction(rules: Restrictions, path: str, fstype: str | None) -> Finding | None:
    if not rules.config.active or rules.allow.match(path) is not None:
        return None
    rule = rules.paths.match(path)
    if rule is None and fstype is not None and fstype in rules.fstypes:
        rule = f"fstype:{fstype}"
    if rule is None:
        return None
    return Finding(RESTRICTIONS, rules.config.verdict, rule)


def decide_child(rules: ChildRules, child_path: str, parents: ParentImages) -> Finding | None:
    """Whether a listed parent image is starting a listed child.

    ``parents`` is only called for a listed child: its /proc reads are the expensive part.
    Both the exec'ing process's current image (fork + exec) and its parent's image (a fork
    that execs an unlisted helper such as env first) count as the parent.
    """
    child = image_name(child_path)
    if not rules.is_listed_child(child):
        return None
    for image, via in parents():
        parent = image_name(image)
        if not rules.is_listed_parent(parent):
            continue
        if any(
            fnmatch.fnmatchcase(parent, p) and fnmatch.fnmatchcase(child, c)
            for p, c in rules.allow_pairs
        ):
            return None
        return Finding(CHILD_PROCESS, rules.config.verdict, f"{parent} -> {child} ({via})", image)
    return None


def decide_exec(
    policy: Policy, path: str, fstype: str | None, parents: ParentImages
) -> list[Finding]:
    """The path-based modules' findings for one execution (the malware module is separate)."""
    findings: list[Finding] = []
    restricted = decide_restriction(policy.restrictions, path, fstype)
    if restricted is not None:
        findings.append(restricted)
    child = decide_child(policy.child_process, path, parents)
    if child is not None:
        findings.append(child)
    return findings


def reported(findings: list[Finding]) -> list[Finding]:
    """What one execution reports: the modules that stopped it, or else every notification."""
    denied = [f for f in findings if f.decision == DENY]
    return denied or findings


def depends_on_path(policy: Policy, path: str, fstype: str | None) -> bool:
    """Whether a verdict about this file depends on its path or on who execs it.

    Such a file must never get a kernel ignore mark: the mark is per inode, so it would skip
    the next exec of the same file from a listed parent (or through another path).
    """
    rules = policy.restrictions
    if rules.config.active and (
        rules.paths.match(path) is not None
        or rules.allow.match(path) is not None
        or (fstype is not None and fstype in rules.fstypes)
    ):
        return True
    return policy.child_process.is_listed_child(image_name(path))


def action_for(decision: str, can_block: bool) -> str:
    """The event action: prevented before it ran, killed after it started, or only notified."""
    if decision == NOTIFY:
        return EventAction.NOTIFIED
    return EventAction.PREVENTED if can_block else EventAction.KILLED


def policy_path(state_dir: Path) -> Path:
    return state_dir / POLICY_FILE


def load_policy(state_dir: Path) -> Policy | None:
    """The last applied policy, so enforcement survives a restart without the server."""
    data = read_json(policy_path(state_dir))
    return None if data is None else compile_policy(data)


def save_policy(state_dir: Path, wire: AgentPolicy | Mapping[str, Any]) -> None:
    write_json(policy_path(state_dir), dict(wire))

"""The exec modules' rules (path lists, restrictions, child-process rules) and the pure
decisions made from them about one execution.

No I/O here: every decision the sensors make is unit-testable without a kernel. The policy
that holds these rules is :class:`trapsd.policy.Policy`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from trapsapi.enums import EventAction, Mode
from trapsd.defaults import CHILD_PROCESS, RESTRICTIONS

if TYPE_CHECKING:
    from trapsd.policy import Policy

MALWARE = "malware"
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


def is_glob(entry: str) -> bool:
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
            if is_glob(entry):
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

"""Which policies apply to an agent, in which order, and who wins each setting (pure code).

Order: explicit priority (higher first), then specificity of the target that matched
(hostname exact > hostname glob > label/group > OS > all), then name. Never insertion order.
A setting is a leaf of the rules (``child_process.mode``, ``agent.console``...): the first
policy in that order that sets it wins; the rest are its losers.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SPECIFICITY = {"hostname": 5, "hostname_glob": 4, "label": 3, "group": 3, "os": 2, "all": 1}


@dataclass(frozen=True)
class Target:
    """What policies can match on: the agent as it last checked in, plus its labels/group."""

    hostname: str
    os: str = ""
    labels: tuple[str, ...] = ()
    group: str | None = None

    @property
    def signature(self) -> tuple[str, str, tuple[str, ...], str | None]:
        """Equal signatures resolve equally (labels are stored sorted, so no sort here)."""
        return (self.hostname, self.os, self.labels, self.group)


@dataclass(frozen=True)
class Match:
    specificity: str
    matched: str

    @property
    def rank(self) -> int:
        return SPECIFICITY[self.specificity]


def _is_glob(value: str) -> bool:
    return any(c in value for c in "*?[")


def _lower(values: Iterable[str]) -> list[str]:
    return [v.lower() for v in values]


@dataclass(frozen=True)
class CompiledTargets:
    """A policy's include/exclude lists, prepared once per policy version."""

    all: bool
    hosts: frozenset[str]
    host_globs: tuple[str, ...]
    host_regex: re.Pattern[str] | None
    labels: frozenset[str]
    groups: frozenset[str]
    os: frozenset[str]
    ex_hosts: frozenset[str]
    ex_host_regex: re.Pattern[str] | None
    ex_labels: frozenset[str]
    ex_groups: frozenset[str]
    ex_os: frozenset[str]

    @classmethod
    def of(cls, targets: Mapping[str, Any]) -> CompiledTargets:
        include = targets.get("include") or {}
        exclude = targets.get("exclude") or {}
        hosts = _lower(include.get("hostnames", []))
        ex_hosts = _lower(exclude.get("hostnames", []))
        globs = tuple(h for h in hosts if _is_glob(h))
        ex_globs = [h for h in ex_hosts if _is_glob(h)]
        return cls(
            all=bool(include.get("all")),
            hosts=frozenset(h for h in hosts if not _is_glob(h)),
            host_globs=globs,
            host_regex=_regex(globs),
            labels=frozenset(include.get("labels", [])),
            groups=frozenset(include.get("groups", [])),
            os=frozenset(_lower(include.get("os", []))),
            ex_hosts=frozenset(h for h in ex_hosts if not _is_glob(h)),
            ex_host_regex=_regex(ex_globs),
            ex_labels=frozenset(exclude.get("labels", [])),
            ex_groups=frozenset(exclude.get("groups", [])),
            ex_os=frozenset(_lower(exclude.get("os", []))),
        )

    def excluded(self, target: Target) -> str | None:
        host, os_name = target.hostname.lower(), target.os.lower()
        if host in self.ex_hosts or (self.ex_host_regex and self.ex_host_regex.match(host)):
            return f"hostname {target.hostname!r} is excluded"
        for label in sorted(self.ex_labels.intersection(target.labels)):
            return f"label {label!r} is excluded"
        if target.group is not None and target.group in self.ex_groups:
            return f"group {target.group!r} is excluded"
        if os_name and os_name in self.ex_os:
            return f"OS {target.os!r} is excluded"
        return None

    def match(self, target: Target) -> Match | None:
        """The most specific include target that matches (None: not included)."""
        host, os_name = target.hostname.lower(), target.os.lower()
        if host in self.hosts:
            return Match("hostname", f"hostname {target.hostname!r}")
        if self.host_regex is not None and self.host_regex.match(host):
            glob = next(g for g in self.host_globs if fnmatch.fnmatchcase(host, g))
            return Match("hostname_glob", f"hostname glob {glob!r}")
        for label in sorted(self.labels.intersection(target.labels)):
            return Match("label", f"label {label!r}")
        if target.group is not None and target.group in self.groups:
            return Match("group", f"group {target.group!r}")
        if os_name and os_name in self.os:
            return Match("os", f"OS {target.os!r}")
        if self.all:
            return Match("all", "all agents")
        return None


def _regex(globs: Sequence[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None


@dataclass(frozen=True)
class StoredPolicy:
    name: str
    priority: int
    enabled: bool
    targets: Mapping[str, Any]
    rules: Mapping[str, Any]
    compiled: CompiledTargets = field(init=False, compare=False)
    settings: dict[str, Any] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled", CompiledTargets.of(self.targets))
        object.__setattr__(self, "settings", flatten(self.rules))


def flatten(rules: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"malware": {"mode": "off"}}`` as ``{"malware.mode": "off"}`` (None values left out)."""
    out: dict[str, Any] = {}
    for key, value in rules.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif value is not None:
            out[name] = value
    return out


def unflatten(settings: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


@dataclass(frozen=True)
class Ranked:
    policy: StoredPolicy
    match: Match


@dataclass
class Resolution:
    ranked: list[Ranked]
    skipped: list[tuple[str, str]]

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(r.policy.name for r in self.ranked)


def rank(policies: Iterable[StoredPolicy], target: Target) -> Resolution:
    ranked: list[Ranked] = []
    skipped: list[tuple[str, str]] = []
    for policy in policies:
        if not policy.enabled:
            skipped.append((policy.name, "disabled"))
            continue
        why_not = policy.compiled.excluded(target)
        if why_not is not None:
            skipped.append((policy.name, why_not))
            continue
        found = policy.compiled.match(target)
        if found is None:
            skipped.append((policy.name, "no include target matches"))
            continue
        ranked.append(Ranked(policy, found))
    ranked.sort(key=lambda r: (-r.policy.priority, -r.match.rank, r.policy.name))
    skipped.sort()
    return Resolution(ranked, skipped)


def effective_settings(ranked: Sequence[Ranked], builtin: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting's value: the first ranked policy that sets it, else the built-in one."""
    out = dict(builtin)
    for entry in reversed(ranked):
        out.update(entry.policy.settings)
    return out


def why(winner: Ranked, loser: Ranked) -> str:
    """Why ``winner`` outranks ``loser``, in words."""
    a, b = winner.policy, loser.policy
    if a.priority != b.priority:
        return f"priority {a.priority} > {b.priority}"
    if winner.match.rank != loser.match.rank:
        return (
            f"same priority {a.priority}; {winner.match.matched} is more specific than "
            f"{loser.match.matched}"
        )
    return f"same priority {a.priority} and specificity ({winner.match.specificity}); name order"


def explain_settings(ranked: Sequence[Ranked], builtin: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For each setting: value, winning policy, why, and the policies it beat."""
    keys = set(builtin)
    for entry in ranked:
        keys.update(entry.policy.settings)
    result = []
    for key in sorted(keys):
        setters = [r for r in ranked if key in r.policy.settings]
        if not setters:
            result.append(
                {
                    "setting": key,
                    "value": builtin[key],
                    "policy": None,
                    "reason": "no matching policy sets it: the built-in default",
                    "losers": [],
                }
            )
            continue
        winner = setters[0]
        reason = f"priority {winner.policy.priority}, {winner.match.matched}" + (
            "" if len(setters) > 1 else "; the only matching policy that sets it"
        )
        losers = [
            {"policy": r.policy.name, "value": r.policy.settings[key], "reason": why(winner, r)}
            for r in setters[1:]
        ]
        result.append(
            {
                "setting": key,
                "value": winner.policy.settings[key],
                "policy": winner.policy.name,
                "reason": reason,
                "losers": losers,
            }
        )
    return result

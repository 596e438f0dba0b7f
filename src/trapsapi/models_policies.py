"""Policies as the admin API and policy files see them (pydantic; esmd validates with these).

A rule field left out (``None``) is not set by that policy: a lower-ranked policy, or the
built-in default, decides it (see docs/policies.md). trapsctl never imports this module: it
parses YAML and sends JSON, and esmd answers with one line that names the offending field.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from trapsapi.enums import Mode
from trapsapi.models import AgentPolicy, Public

PASSWORD_HASH_RE = re.compile(r"^pbkdf2-sha256\$[0-9]{4,7}\$[0-9a-f]{32}\$[0-9a-f]{64}$")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$"

PolicyName = Annotated[str, Field(pattern=NAME_PATTERN)]
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]
Glob = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^\S+$")]
PathEntry = Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^(/|.*[*?\[])")]
Pair = Annotated[str, Field(max_length=511, pattern=r"^[^:\s]+:[^:\s]+$")]
Short = Annotated[str, Field(max_length=255)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileAction(StrEnum):
    ALLOW = "allow"
    NOTIFY = "notify"
    BLOCK = "block"


class ConsoleVisibility(StrEnum):
    VISIBLE = "visible"
    ROOT_ONLY = "root_only"
    HIDDEN = "hidden"


class ModuleRule(Strict):
    mode: Mode | None = None
    user_alert: bool | None = None


class SwitchRule(Strict):
    """A kernel switch (a sysctl): it can only be on or off, never "notify"."""

    mode: Annotated[Mode, Field(description="prevention (on) or off")] | None = None

    @model_validator(mode="after")
    def _no_notification(self) -> SwitchRule:
        if self.mode is Mode.NOTIFICATION:
            raise ValueError("mode: must be one of prevention, off (a kernel switch cannot notify)")
        return self


class MalwareRules(ModuleRule):
    unknown_file: FileAction | None = Field(
        default=None, description="A hash with no verdict: allow, notify or block it."
    )
    offline: FileAction | None = Field(
        default=None, description="An unknown file while the ESM cannot be reached."
    )


class RestrictionRules(ModuleRule):
    paths: Annotated[list[PathEntry], Field(max_length=256)] | None = None
    allow_paths: Annotated[list[PathEntry], Field(max_length=256)] | None = None
    fstypes: Annotated[list[Glob], Field(max_length=64)] | None = None


class ChildProcessRules(ModuleRule):
    parents: Annotated[list[Glob], Field(max_length=256)] | None = None
    children: Annotated[list[Glob], Field(max_length=256)] | None = None
    allow_pairs: Annotated[list[Pair], Field(max_length=256)] | None = Field(
        default=None, description="PARENT:CHILD basename globs that are allowed."
    )


BEHAVIOUR_MODULES = (
    "reverse_shell",
    "fileless",
    "ld_preload",
    "ptrace",
    "wx_memory",
    "privilege_escalation",
)


class BehaviourRules(Strict):
    reverse_shell: ModuleRule | None = None
    fileless: ModuleRule | None = None
    ld_preload: ModuleRule | None = None
    ptrace: ModuleRule | None = None
    wx_memory: ModuleRule | None = None
    privilege_escalation: ModuleRule | None = None


class AgentSettingsRules(Strict):
    heartbeat_interval_s: Annotated[int, Field(ge=10, le=86400)] | None = None
    log_quota_mb: Annotated[int, Field(ge=1, le=10240)] | None = None
    console: ConsoleVisibility | None = None
    user_alert_message: Annotated[str, Field(max_length=512)] | None = None
    hide_user_alerts: bool | None = None
    uninstall_password: Annotated[str, Field(min_length=8, max_length=1024)] | None = Field(
        default=None, description="Plain text on input only: esmd stores and sends its hash."
    )
    uninstall_password_hash: Annotated[str, Field(pattern=PASSWORD_HASH_RE.pattern)] | None = None

    @model_validator(mode="after")
    def _one_password(self) -> AgentSettingsRules:
        if self.uninstall_password is not None and self.uninstall_password_hash is not None:
            raise ValueError("give uninstall_password or uninstall_password_hash, not both")
        return self


class ForensicsRules(Strict):
    enabled: bool | None = None
    quota_mb: Annotated[int, Field(ge=1, le=102400)] | None = None
    retention_days: Annotated[int, Field(ge=1, le=3650)] | None = None
    memory_dump: bool | None = None


class PolicyRules(Strict):
    malware: MalwareRules | None = None
    restrictions: RestrictionRules | None = None
    child_process: ChildProcessRules | None = None
    behaviour: BehaviourRules | None = None
    memfd_noexec: SwitchRule | None = None
    agent: AgentSettingsRules | None = None
    forensics: ForensicsRules | None = None


class TargetSet(Strict):
    labels: Annotated[list[Label], Field(max_length=64)] = []
    groups: Annotated[list[Label], Field(max_length=64)] = []
    hostnames: Annotated[list[Glob], Field(max_length=256)] = Field(
        default=[], description="Exact names or fnmatch globs (web-*), case-insensitive."
    )
    os: Annotated[list[Short], Field(max_length=16)] = []


class IncludeTargets(TargetSet):
    all: bool = False


class PolicyTargets(Strict):
    include: IncludeTargets = IncludeTargets()
    exclude: TargetSet = TargetSet()

    @model_validator(mode="after")
    def _targets_something(self) -> PolicyTargets:
        inc = self.include
        if not (inc.all or inc.labels or inc.groups or inc.hostnames or inc.os):
            raise ValueError(
                "include: name at least one target (all, labels, groups, hostnames or os)"
            )
        return self


class PolicySpec(Strict):
    name: PolicyName
    description: Annotated[str, Field(max_length=1024)] = ""
    priority: Annotated[int, Field(ge=-1000000, le=1000000)] = Field(
        default=0, description="Higher wins; then the more specific target; then the name."
    )
    enabled: bool = True
    targets: PolicyTargets
    rules: PolicyRules = PolicyRules()


class PolicyFile(Strict):
    policies: Annotated[list[PolicySpec], Field(min_length=1, max_length=500)]

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyFile:
        seen: dict[str, int] = {}
        for index, policy in enumerate(self.policies):
            first = seen.setdefault(policy.name, index)
            if first != index:
                raise ValueError(
                    f"policies[{index}].name: {policy.name!r} is already the name of "
                    f"policies[{first}]"
                )
        return self


# --- replies ------------------------------------------------------------------------------


class PolicyRecord(Public):
    """A stored policy: its spec (canonical: unset rules left out) and who changed it last."""

    name: str
    description: str
    priority: int
    enabled: bool
    targets: dict[str, Any]
    rules: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    updated_by: str


class PolicyChange(Public):
    name: str
    action: str = Field(description="created, updated, unchanged or deleted")
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class PolicyApplyResult(Public):
    dry_run: bool
    version: int = Field(description="The global policy version after the apply.")
    changes: list[PolicyChange]


class PolicyHistoryEntry(Public):
    version: int
    at: datetime
    actor: str
    action: str
    policy: str
    changes: dict[str, Any]
    snapshot: list[dict[str, Any]] = Field(description="Every policy as of this version.")


class AgentLabels(Strict):
    labels: Annotated[list[Label], Field(max_length=64)]


class AgentGroup(Strict):
    group: Label | None = Field(description="null: no group")


class AgentTargeting(Public):
    agent_id: str
    labels: list[str]
    group: str | None


class PolicyMatch(Public):
    name: str
    priority: int
    specificity: str = Field(description="hostname, hostname_glob, label, group, os or all")
    matched: str = Field(description="The target that matched, e.g. label 'db'.")


class PolicySkip(Public):
    name: str
    reason: str


class Loser(Public):
    policy: str
    value: Any
    reason: str


class SettingExplain(Public):
    setting: str = Field(description="e.g. child_process.mode")
    value: Any
    policy: str | None = Field(description="The winning policy; null: the built-in default.")
    reason: str
    losers: list[Loser]


class PolicyExplain(Public):
    agent_id: str
    hostname: str
    os: str
    labels: list[str]
    group: str | None
    version: int
    matched: list[PolicyMatch] = Field(description="Matching policies, strongest first.")
    skipped: list[PolicySkip] = Field(description="Policies that do not apply, and why.")
    settings: list[SettingExplain]
    effective: AgentPolicy


# --- one-line validation errors -------------------------------------------------------------

_QUOTED = re.compile(r"'([^']*)'")


def field_path(loc: tuple[int | str, ...] | list[Any]) -> str:
    """``("policies", 0, "rules", "malware", "mode")`` as ``policies[0].rules.malware.mode``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith(("function-", "constrained-")) or "[" in part:
            continue  # pydantic's names of union members and validators
        else:
            text += f".{part}" if text else part
    return text


def _reason(error: Any) -> str:
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    if kind in ("enum", "literal_error"):
        values = _QUOTED.findall(str(ctx.get("expected", "")))
        return "must be one of " + ", ".join(values)
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required"
    if kind == "string_pattern_mismatch":
        return f"{error.get('input')!r} is not valid here (expected {ctx.get('pattern')})"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be an integer"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind in ("list_type",):
        return "must be a list"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a mapping"
    if kind in ("string_type",):
        return "must be a string"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def describe_policy_errors(exc: ValidationError) -> str:
    """The first problem as ``field.path: reason``, plus how many more there are."""
    errors = exc.errors()
    error = errors[0]
    path = field_path(error.get("loc", ()))
    reason = _reason(error)
    if path and re.match(r"^policies\[\d+\]\.\w+", reason):  # a validator names its own path
        text = reason
    elif path and re.match(r"^\w+: ", reason) and error.get("type") == "value_error":
        text = f"{path}.{reason}"
    else:
        text = f"{path}: {reason}" if path else reason
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text


def parse_policy_file(data: Any) -> PolicyFile:
    """A policy file body (``{"policies": [...]}``), or ValueError with one clear line."""
    if not isinstance(data, dict):
        raise ValueError("a policy file must be a mapping with a 'policies' list")
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        raise ValueError(describe_policy_errors(exc)) from None

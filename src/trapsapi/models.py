"""The wire contract as pydantic models: the source of esmd's OpenAPI document.

Only esmd imports this module (pydantic costs the agent ~10 MB RSS); trapsd speaks the same
shapes through :mod:`trapsapi.wire`. Request models forbid unknown fields, so a mistyped or
mass-assigned field is a 422, never silently ignored.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from trapsapi.enums import (
    EventAction,
    Health,
    Mode,
    OperationalStatus,
    Role,
    Severity,
    TimeBucket,
    TriageStatus,
    Verdict,
)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _sha256(value: str) -> str:
    value = value.lower()
    if not SHA256_RE.match(value):
        raise ValueError("must be 64 hexadecimal characters (a SHA-256)")
    return value


Sha256 = Annotated[str, AfterValidator(_sha256)]
ShortText = Annotated[str, Field(max_length=255)]
LongText = Annotated[str, Field(max_length=8192)]
MAX_EVENTS_PER_BATCH = 1000


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Public(BaseModel):
    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(Public, Generic[T]):
    data: list[T]
    count: int = Field(
        description="Rows matching the filters (before limit), counted up to 10,000; "
        "beyond that 10,000 and count_capped is true."
    )
    count_capped: bool = Field(
        default=False, description="More rows match than count says (the count stopped)."
    )
    next_cursor: str | None = Field(
        default=None,
        description="Give it as cursor= (with the same filters) for the next page; "
        "null on the last page.",
    )


class ErrorBody(BaseModel):
    detail: str = Field(description="One-line, human-readable reason.")


# --- agent protocol -------------------------------------------------------------------------


class ModuleState(Request):
    name: ShortText
    enabled: bool
    mode: Mode
    mechanism: ShortText = Field(description="e.g. fanotify, proc-connector, psutil-poll")
    healthy: bool
    detail: ShortText = ""


class Footprint(Request):
    rss_bytes: int = Field(ge=0)
    cpu_percent: float = Field(ge=0)
    disk_bytes: int = Field(ge=0)


class EnrollRequest(Request):
    token: Annotated[str, Field(min_length=1, max_length=200)]
    hostname: Annotated[str, Field(min_length=1, max_length=255)]
    os: ShortText
    os_version: ShortText
    agent_version: ShortText


class EnrollResponse(Public):
    agent_id: str
    agent_secret: str = Field(description="Shown once; the server keeps only its hash.")
    heartbeat_interval_s: int
    servers: list[str]


class CheckinRequest(Request):
    hostname: Annotated[str, Field(min_length=1, max_length=255)]
    os: ShortText
    os_version: ShortText
    agent_version: ShortText
    ips: Annotated[list[ShortText], Field(max_length=64)] = []
    modules: Annotated[list[ModuleState], Field(max_length=64)] = []
    footprint: Footprint | None = None
    policy_version: int | None = Field(default=None, description="Policy version applied.")
    outbox_depth: int = Field(default=0, ge=0)
    events_dropped: int = Field(default=0, ge=0)
    instance_id: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="Random per agent process: two live copies of one identity "
        "(a cloned machine) are told apart by it and refused with 409.",
    )
    stopping: bool = Field(default=False, description="The agent's last check-in before it stops.")


class ModulePolicy(Public):
    """One module's settings; the rule lists are sent only to the modules that have them."""

    enabled: bool
    mode: Mode
    user_alert: bool
    paths: list[str] | None = None
    allow_paths: list[str] | None = None
    fstypes: list[str] | None = None
    parents: list[str] | None = None
    children: list[str] | None = None
    allow_pairs: list[str] | None = None
    unknown_file: str | None = None
    offline: str | None = None


class AgentSettingsPolicy(Public):
    log_quota_mb: int
    console: str = Field(description="visible, root_only or hidden")
    user_alert_message: str | None = Field(description="null: user alerts are hidden")
    uninstall_password_hash: str | None = Field(description="pbkdf2-sha256$iter$salt$hash")


class ForensicsPolicy(Public):
    enabled: bool
    quota_mb: int
    retention_days: int
    memory_dump: bool


class AgentPolicy(Public):
    version: int
    heartbeat_interval_s: int
    modules: dict[str, ModulePolicy]
    blocked_hashes: list[str]
    allowed_hashes: list[str]
    agent: AgentSettingsPolicy | None = None
    forensics: ForensicsPolicy | None = None


class CheckinResponse(Public):
    agent_id: str
    server_time: datetime
    policy: AgentPolicy
    actions: list[dict[str, Any]] = []
    servers: list[str]


class SecurityEvent(Request):
    id: UUID = Field(description="Made by the agent when the event happens; dedupe key.")
    time: datetime
    module: ShortText
    severity: Severity
    action: EventAction
    process_path: LongText
    sha256: Sha256 | None = None
    pid: int | None = None
    ppid: int | None = None
    parent_path: LongText | None = None
    user: ShortText | None = None
    uid: int | None = None
    cmdline: LongText = ""
    details: dict[str, Any] = {}


class EventBatch(Request):
    events: Annotated[list[SecurityEvent], Field(min_length=1, max_length=MAX_EVENTS_PER_BATCH)]


class EventAck(Public):
    acked: list[UUID] = Field(description="Every event of the batch now committed (new or not).")
    inserted: int = Field(description="How many of them were new rows.")


# --- admin API ------------------------------------------------------------------------------


class LoginRequest(Request):
    username: Annotated[str, Field(min_length=1, max_length=128)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class LoginResponse(Public):
    token: str
    expires_at: datetime
    username: str
    role: Role


class UserPublic(Public):
    username: str
    role: Role


class AgentPublic(Public):
    agent_id: str
    hostname: str
    os: str
    os_version: str
    agent_version: str
    ips: list[str]
    enrolled_at: datetime
    last_checkin_at: datetime | None
    health: Health
    issues: list[str] = Field(default=[], description="Why the agent is degraded.")
    status: OperationalStatus
    modules: list[ModuleState]
    footprint: Footprint | None
    policy_version: int | None
    outbox_depth: int
    events_dropped: int
    labels: list[str] = []
    group: str | None = None
    expected_policy_version: int | None = Field(
        default=None, description="The version the agent was sent before its last report."
    )
    policy_drift: bool = Field(
        default=False, description="It reported another version than it was sent (degraded)."
    )


class EventPublic(Public):
    id: UUID
    agent_id: str
    hostname: str
    time: datetime
    received_at: datetime
    module: str
    severity: Severity
    action: EventAction
    process_path: str
    sha256: str | None
    pid: int | None
    ppid: int | None
    parent_path: str | None
    user: str | None
    uid: int | None
    cmdline: str
    details: dict[str, Any]
    status: TriageStatus = TriageStatus.NEW
    assignee: str | None = None
    comment: str = ""


class VerdictSet(Request):
    verdict: Verdict
    comment: Annotated[str, Field(max_length=1024)] = ""


class VerdictPublic(Public):
    sha256: str
    verdict: Verdict
    source: str
    comment: str
    updated_at: datetime
    updated_by: str


class TokenCreate(Request):
    label: Annotated[str, Field(max_length=255)] = ""
    expires_in_s: int = Field(default=86400, ge=60, le=365 * 86400)
    max_uses: int = Field(default=1, ge=1, le=1_000_000)


class TokenPublic(Public):
    id: str
    label: str
    created_at: datetime
    expires_at: datetime
    max_uses: int
    uses: int
    revoked: bool
    created_by: str
    token: str | None = Field(default=None, description="The secret; only in the create reply.")


Username = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^\S+$")]
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class UserRecord(Public):
    """A user as the users API shows it (never the password hash)."""

    username: str
    role: Role
    created_at: datetime


class UserCreate(Request):
    username: Username
    password: Password
    role: Role = Role.VIEWER


class UserUpdate(Request):
    role: Role


class PasswordChange(Request):
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Password


class ApiTokenCreate(Request):
    name: Annotated[str, Field(min_length=1, max_length=255)]
    username: Username = Field(description="The user the token acts as (with that user's role).")
    expires_in_s: int | None = Field(
        default=None, ge=60, le=10 * 365 * 86400, description="None: never expires."
    )


class ApiTokenPublic(Public):
    id: str
    name: str
    username: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked: bool
    last_used_at: datetime | None = None
    token: str | None = Field(default=None, description="The secret; only in the create reply.")


class AuditRecord(Public):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    source_ip: str | None
    detail: dict[str, Any]


class EventTriage(Request):
    """A triage change; fields left out stay as they are; ``assignee: ""`` unassigns."""

    status: TriageStatus | None = None
    assignee: Annotated[str, Field(max_length=128)] | None = None
    comment: Annotated[str, Field(max_length=4096)] | None = None


class TimeCount(Public):
    start: datetime
    count: int


class EventCounts(Public):
    total: int
    since: datetime
    bucket: TimeBucket
    by_module: dict[str, int]
    by_severity: dict[str, int]
    by_status: dict[str, int]
    by_time: list[TimeCount] = Field(description="Buckets with events, oldest first.")

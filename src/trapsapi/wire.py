"""The agent protocol as TypedDicts: what trapsd builds and reads, without pydantic.

These mirror the pydantic models of :mod:`trapsapi.models` field for field;
``tests/trapsapi/test_contract_shapes.py`` fails when the two drift apart.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict


class ModuleState(TypedDict):
    name: str
    enabled: bool
    mode: str
    mechanism: str
    healthy: bool
    detail: str


class Footprint(TypedDict):
    rss_bytes: int
    cpu_percent: float
    disk_bytes: int


class EnrollRequest(TypedDict):
    token: str
    hostname: str
    os: str
    os_version: str
    agent_version: str


class EnrollResponse(TypedDict):
    agent_id: str
    agent_secret: str
    heartbeat_interval_s: int
    servers: list[str]


class CheckinRequest(TypedDict):
    hostname: str
    os: str
    os_version: str
    agent_version: str
    ips: list[str]
    modules: list[ModuleState]
    footprint: Footprint | None
    policy_version: int | None
    outbox_depth: int
    events_dropped: int
    instance_id: str | None
    stopping: bool


class ModulePolicy(TypedDict):
    enabled: bool
    mode: str
    user_alert: bool
    paths: NotRequired[list[str] | None]
    allow_paths: NotRequired[list[str] | None]
    fstypes: NotRequired[list[str] | None]
    parents: NotRequired[list[str] | None]
    children: NotRequired[list[str] | None]
    allow_pairs: NotRequired[list[str] | None]
    unknown_file: NotRequired[str | None]
    offline: NotRequired[str | None]


class AgentSettingsPolicy(TypedDict):
    log_quota_mb: int
    console: str
    user_alert_message: str | None
    uninstall_password_hash: str | None


class ForensicsPolicy(TypedDict):
    enabled: bool
    quota_mb: int
    retention_days: int
    memory_dump: bool


class AgentPolicy(TypedDict):
    version: int
    heartbeat_interval_s: int
    modules: dict[str, ModulePolicy]
    blocked_hashes: list[str]
    allowed_hashes: list[str]
    agent: NotRequired[AgentSettingsPolicy | None]
    forensics: NotRequired[ForensicsPolicy | None]


class CheckinResponse(TypedDict):
    agent_id: str
    server_time: str
    policy: AgentPolicy
    actions: list[dict[str, Any]]
    servers: list[str]


class SecurityEvent(TypedDict):
    id: str
    time: str
    module: str
    severity: str
    action: str
    process_path: str
    sha256: str | None
    pid: int | None
    ppid: int | None
    parent_path: str | None
    user: str | None
    uid: int | None
    cmdline: str
    details: dict[str, Any]


class EventBatch(TypedDict):
    events: list[SecurityEvent]


class EventAck(TypedDict):
    acked: list[str]
    inserted: int


class RotatedSecret(TypedDict):
    agent_id: str
    agent_secret: str


class AgentAnalysis(TypedDict):
    sha256: str
    verdict: str
    reasons: list[str]


class AgentVerdictQuery(TypedDict):
    sha256s: list[str]
    reports: list[AgentAnalysis]


class AgentVerdicts(TypedDict):
    verdicts: dict[str, str]
    ttl_s: int

"""The action centre's part of the wire contract (pydantic; only esmd imports it).

Per-type parameter models validate ``ActionCreate.params``; the agent reads the same shapes
through :mod:`trapsapi.wire_actions`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, model_validator

from trapsapi.enums import Health
from trapsapi.enums_actions import ActionState, ActionType
from trapsapi.models import Public, Request, Sha256
from trapsapi.wire_actions import MAX_UPLOAD_BYTES

MAX_RESULT_BYTES = 64 * 1024
"""A result JSON larger than this is refused (422): results are summaries, not payloads."""
MAX_LOG_BYTES = MAX_UPLOAD_BYTES
"""The largest log bundle (gzip) an agent may upload for one action."""


def _absolute(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError("must be an absolute path")
    return value


AbsPath = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(_absolute)]
DEFAULT_SEARCH_PATHS = ["/tmp", "/var/tmp", "/dev/shm", "/root", "/home", "/opt", "/usr/local"]


class NoParams(Request):
    """checkin, clear_history, unisolate, uninstall: no parameters."""


class ScanParams(Request):
    paths: Annotated[list[AbsPath], Field(min_length=1, max_length=32)]
    max_files: int = Field(default=100_000, ge=1, le=1_000_000)
    max_seconds: int = Field(default=300, ge=1, le=3600)


class QuarantineParams(Request):
    """A path (optionally checked against ``sha256``), or a hash searched under search_paths."""

    path: AbsPath | None = None
    sha256: Sha256 | None = None
    reason: Annotated[str, Field(max_length=255)] = ""
    search_paths: Annotated[list[AbsPath], Field(min_length=1, max_length=32)] = Field(
        default_factory=lambda: list(DEFAULT_SEARCH_PATHS)
    )

    @model_validator(mode="after")
    def _path_or_hash(self) -> QuarantineParams:
        if self.path is None and self.sha256 is None:
            raise ValueError("give path or sha256 (or both)")
        return self


class RestoreParams(Request):
    quarantine_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]


class KillProcessParams(Request):
    pid: int = Field(ge=2, le=4_194_304)
    start_time: float | None = Field(
        default=None, ge=0, description="Process start, epoch seconds: refuses a reused PID."
    )
    name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    tree: bool = Field(default=True, description="Kill the descendants too.")


class IsolateParams(Request):
    grace_s: int = Field(
        default=120, ge=10, le=3600, description="Roll back unless an ESM answers within this."
    )


class RetrieveLogsParams(Request):
    max_bytes: int = Field(default=1024 * 1024, ge=4096, le=MAX_LOG_BYTES)


BundleId = Annotated[str, Field(pattern=r"^[0-9a-f-]{8,64}$")]
"""An agent's forensic bundle ID (the ID of the event it belongs to)."""


class RetrieveForensicsParams(Request):
    """Which bundles to upload: by event or bundle ID, or the ``recent`` newest (since a
    time); nothing given means the 10 newest. At most ``max_bytes`` in all."""

    event_id: UUID | None = None
    event_ids: Annotated[list[UUID], Field(max_length=100)] = []
    bundle_ids: Annotated[list[BundleId], Field(max_length=100)] = []
    recent: int | None = Field(default=None, ge=1, le=100)
    since: datetime | None = None
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=4096, le=256 * 1024 * 1024)


PARAMS_MODELS: dict[ActionType, type[Request]] = {
    ActionType.CHECKIN: NoParams,
    ActionType.SCAN: ScanParams,
    ActionType.RETRIEVE_LOGS: RetrieveLogsParams,
    ActionType.RETRIEVE_FORENSICS: RetrieveForensicsParams,
    ActionType.QUARANTINE: QuarantineParams,
    ActionType.RESTORE: RestoreParams,
    ActionType.KILL_PROCESS: KillProcessParams,
    ActionType.CLEAR_HISTORY: NoParams,
    ActionType.ISOLATE: IsolateParams,
    ActionType.UNISOLATE: NoParams,
    ActionType.UNINSTALL: NoParams,
}


class AgentQuery(Request):
    """Agents matching every given field (resolved once, when the action is created)."""

    hostname: Annotated[str, Field(min_length=1, max_length=255)] | None = Field(
        default=None, description="A glob, case-insensitive (web-*)."
    )
    os: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    health: Health | None = None


class ActionTarget(Request):
    """Exactly one of: an agent, a label, a query."""

    agent_id: Annotated[str, Field(min_length=1, max_length=36)] | None = None
    label: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    query: AgentQuery | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ActionTarget:
        given = [n for n in ("agent_id", "label", "query") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of agent_id, label, query")
        return self


class ActionCreate(Request):
    type: ActionType
    params: dict[str, Any] = {}
    target: ActionTarget
    expires_in_s: int = Field(default=86400, ge=60, le=30 * 86400)
    comment: Annotated[str, Field(max_length=1024)] = ""


class ActionPublic(Public):
    id: str
    type: ActionType
    params: dict[str, Any]
    target: dict[str, Any]
    comment: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    cancelled: bool
    agents: int = Field(description="Agents the target resolved to at creation.")
    progress: dict[str, int] = Field(description="Agents per state (only non-zero states).")
    done: bool = Field(description="Every agent is in a final state.")


class ActionDelivery(Public):
    """The action on one agent."""

    agent_id: str
    hostname: str
    state: ActionState
    delivered_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    detail: str
    has_logs: bool


class ActionDetail(ActionPublic):
    deliveries: list[ActionDelivery]


class QuarantineEntry(Public):
    """A file an agent reported quarantined (by an action) and not yet restored."""

    agent_id: str
    hostname: str
    quarantine_id: str
    path: str
    sha256: str | None
    quarantined_at: datetime
    action_id: str


class LogBundle(Public):
    action_id: str
    agent_id: str
    size: int
    sha256: str
    created_at: datetime
    content_b64: str = Field(description="The gzip file, base64.")


# --- agent protocol -------------------------------------------------------------------------


class ActionOrder(Public):
    """An action as a check-in reply hands it to the agent."""

    id: str
    type: ActionType
    params: dict[str, Any]
    expires_at: datetime


class ActionResult(Request):
    state: Literal["succeeded", "failed"]
    result: dict[str, Any] = {}
    detail: Annotated[str, Field(max_length=1024)] = ""


class ActionResultAck(Public):
    action_id: str
    state: ActionState


Base64Content = Annotated[
    str, Field(min_length=1, max_length=(MAX_LOG_BYTES * 4) // 3 + 8, description="base64")
]


class LogUpload(Request):
    content_b64: Base64Content
    sha256: Sha256


class LogUploadAck(Public):
    action_id: str
    size: int

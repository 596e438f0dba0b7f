"""The action centre's agent protocol as TypedDicts (mirrors :mod:`trapsapi.models_actions`)."""

from __future__ import annotations

from typing import Any, TypedDict

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
"""The largest file (a log bundle, one forensic bundle) one action upload carries."""


class ActionOrder(TypedDict):
    id: str
    type: str
    params: dict[str, Any]
    expires_at: str


class ActionResult(TypedDict):
    state: str
    result: dict[str, Any]
    detail: str


class ActionResultAck(TypedDict):
    action_id: str
    state: str


class LogUpload(TypedDict):
    content_b64: str
    sha256: str


class LogUploadAck(TypedDict):
    action_id: str
    size: int


class ForensicUpload(TypedDict):
    bundle_id: str
    event_id: str | None
    created_at: str
    content_b64: str
    sha256: str


class ForensicUploadAck(TypedDict):
    id: str
    size: int
    duplicate: bool

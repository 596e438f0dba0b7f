"""Forensic bundles on the server: the agent's upload and what admins list and download.

A bundle is one gzip JSON file the agent wrote for one security event (``trapsd.forensics``);
it reaches the server through a ``retrieve_forensics`` action, one upload per bundle.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import Field

from trapsapi.models import EventPublic, Public, Request, Sha256
from trapsapi.models_actions import MAX_LOG_BYTES, Base64Content, BundleId

MAX_FORENSIC_BYTES = MAX_LOG_BYTES
"""The largest bundle (gzip) one upload carries: the same bound and path as a log bundle."""


class ForensicUpload(Request):
    """One bundle of a retrieve_forensics action; a repeat of the same bundle is a no-op."""

    bundle_id: BundleId
    event_id: UUID | None = None
    created_at: datetime = Field(description="When the agent wrote the bundle.")
    content_b64: Base64Content
    sha256: Sha256


class ForensicUploadAck(Public):
    id: str = Field(description="The bundle's ID on the server.")
    size: int
    duplicate: bool = Field(description="The bundle was stored before (nothing changed).")


class ForensicBundle(Public):
    """A stored bundle's metadata; its content is at ``GET /forensics/{id}/content``."""

    id: str
    agent_id: str
    hostname: str
    bundle_id: str = Field(description="The agent's ID of the bundle.")
    event_id: str | None
    action_id: str | None
    size: int
    sha256: str
    created_at: datetime
    received_at: datetime


class ForensicRef(Public):
    """A bundle as the event detail lists it."""

    id: str
    size: int
    received_at: datetime


class EventDetail(EventPublic):
    """``GET /events/{id}``: the event and the forensic bundles the server holds for it."""

    forensics: list[ForensicRef] = []

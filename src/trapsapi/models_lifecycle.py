"""Agent lifecycle replies: a rotated credential, a forgotten agent."""

from __future__ import annotations

from pydantic import Field

from trapsapi.models import Public


class RotatedSecret(Public):
    agent_id: str
    agent_secret: str = Field(
        description="Shown once. The old secret works until the first request with this one."
    )


class AgentForgotten(Public):
    agent_id: str
    hostname: str
    events_deleted: int

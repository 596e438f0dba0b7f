"""The communication-server registry as admins see it (``GET /api/v1/servers``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from trapsapi.models import Public


class ServerPublic(Public):
    id: str
    address: str = Field(description="The URL agents are told to use.")
    version: str
    started_at: datetime
    last_seen: datetime
    alive: bool = Field(description="Its heartbeat is recent (within three periods).")
    agents_served: int = Field(description="Agents that checked in through it lately.")
    requests_per_s: float

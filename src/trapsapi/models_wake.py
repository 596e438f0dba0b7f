"""The wake channel's reply (``GET /api/v1/agent/wait``); a timeout is a 204 with no body."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from trapsapi.models import Public


class WakeReply(Public):
    reason: Literal["policy", "pending"] = Field(
        description="policy: the policy version moved; pending: something waits for this agent."
    )
    policy_version: int = Field(description="The current policy version on the server.")

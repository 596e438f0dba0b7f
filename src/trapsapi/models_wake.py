"""The wake channel's reply (``GET /api/v1/agent/wait``); a timeout is a 204 with no body."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from trapsapi.models import AgentPolicy, Public


class WakeReply(Public):
    reason: Literal["policy", "pending"] = Field(
        description="policy: the policy version moved; pending: something waits for this agent."
    )
    policy_version: int = Field(description="The current policy version on the server.")
    policy: AgentPolicy | None = Field(
        default=None,
        description="With deliver=true, when the agent is behind: its new effective policy.",
    )
    actions: list[dict[str, Any]] | None = Field(
        default=None,
        description="With deliver=true: its pending actions, now marked delivered (as a "
        "check-in delivers them).",
    )
    report_within_s: float | None = Field(
        default=None,
        description="With deliver=true and a new policy: check in (to report the version "
        "applied) at a random moment within this many seconds, not at once.",
    )

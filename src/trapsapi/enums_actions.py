"""Enumerations of the action centre (plain str enums, importable without pydantic)."""

from __future__ import annotations

from enum import StrEnum


class ActionType(StrEnum):
    CHECKIN = "checkin"
    SCAN = "scan"
    RETRIEVE_LOGS = "retrieve_logs"
    RETRIEVE_FORENSICS = "retrieve_forensics"
    QUARANTINE = "quarantine"
    RESTORE = "restore"
    KILL_PROCESS = "kill_process"
    CLEAR_HISTORY = "clear_history"
    ISOLATE = "isolate"
    UNISOLATE = "unisolate"
    UNINSTALL = "uninstall"


class ActionState(StrEnum):
    """The state of one action on one agent."""

    PENDING = "pending"
    """Created; the agent has not checked in since."""
    DELIVERED = "delivered"
    """Handed to the agent in a check-in reply; no result yet."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    """Not delivered (or not answered) before the action's expiry."""
    CANCELLED = "cancelled"
    """Cancelled by an admin before delivery."""


FINAL_STATES = frozenset(
    {ActionState.SUCCEEDED, ActionState.FAILED, ActionState.EXPIRED, ActionState.CANCELLED}
)
REPORTED_STATES = frozenset({ActionState.SUCCEEDED, ActionState.FAILED})

"""Enumerations of the wire contract (plain str enums, importable without pydantic)."""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    PREVENTION = "prevention"
    NOTIFICATION = "notification"
    OFF = "off"


class Severity(StrEnum):
    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class EventAction(StrEnum):
    PREVENTED = "prevented"
    """Stopped before the process ran (fanotify DENY)."""
    KILLED = "killed"
    """Stopped after it started (detection mechanisms that cannot block)."""
    NOTIFIED = "notified"
    """Allowed and reported (notification mode)."""


class Verdict(StrEnum):
    MALWARE = "malware"
    BENIGN = "benign"
    GRAYWARE = "grayware"
    UNKNOWN = "unknown"


class Role(StrEnum):
    SUPERUSER = "superuser"
    """Everything, including users and enrollment tokens."""
    VIEWER = "viewer"
    """Read-only access to every admin resource."""
    SECURITY_ADMIN = "security_admin"
    """Policies, actions, hash verdicts, enrollment tokens, event triage and the audit log;
    not users or API tokens."""
    ANALYST = "analyst"
    """Event triage; read-only elsewhere."""


class TriageStatus(StrEnum):
    """Where an analyst is with a security event."""

    NEW = "new"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


class TimeBucket(StrEnum):
    HOUR = "hour"
    DAY = "day"


class Health(StrEnum):
    CONNECTED = "connected"
    DEGRADED = "degraded"
    """Checking in, with issues: a module down, events dropped, an identity conflict…"""
    DISCONNECTED = "disconnected"
    ISOLATED = "isolated"
    """Connected, with the network cut off except for the ESM (an isolate action)."""
    UNINSTALLED = "uninstalled"
    """The agent reported an uninstall action done and has not checked in since."""
    STOPPED = "stopped"
    """The agent said it was stopping and has not checked in since."""


class OperationalStatus(StrEnum):
    PROTECTED = "protected"
    PARTIALLY_PROTECTED = "partially_protected"
    UNPROTECTED = "unprotected"


SEVERITY_ORDER = {s: i for i, s in enumerate(Severity)}

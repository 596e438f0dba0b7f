"""Agent identity (the per-agent credential) and how admins see agents (health, status)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    String,
    and_,
    bindparam,
    cast,
    not_,
    or_,
    select,
    update,
)

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.db.tables import AGENTS, POLICY_STATE, Agent
from esmd.errors import Unauthorized
from esmd.security import token_matches
from esmd.services.policy import POLICY_ROW
from esmd.timeutil import as_utc
from trapsapi.enums import Health, OperationalStatus
from trapsapi.models import AgentPublic

_NO_HASH = "0" * 64
REVOKED = "revoked"
"""Stored instead of a secret hash: no secret matches it, and the agent is told why."""
# One primary-key lookup authenticates the agent and reads the current policy version.
_AUTHENTICATE = select(
    AGENTS.c.secret_hash,
    AGENTS.c.next_secret_hash,
    AGENTS.c.hostname,
    AGENTS.c.instance_id,
    AGENTS.c.previous_instance_id,
    AGENTS.c.instance_changed_at,
    AGENTS.c.identity_conflict_at,
    AGENTS.c.labels,
    AGENTS.c.group_name,
    select(POLICY_STATE.c.version)
    .where(POLICY_STATE.c.id == POLICY_ROW)
    .scalar_subquery()
    .label("policy_version"),
).where(AGENTS.c.agent_id == bindparam("agent_id"))


@dataclass(frozen=True)
class AgentIdentity:
    """The calling agent, known only from its credential (never from a request body)."""

    agent_id: str
    hostname: str
    current_policy_version: int = 0
    """The global policy version, read in the same lookup (not the agent's applied one)."""
    instance_id: str | None = None
    previous_instance_id: str | None = None
    instance_changed_at: datetime | None = None
    identity_conflict_at: datetime | None = None
    rotated: bool = False
    """The agent used the secret of a pending rotation: it is now the only valid one."""
    labels: tuple[str, ...] = ()
    group: str | None = None
    """What policies target (with the hostname and OS), read in the same lookup."""


def parse_agent_credential(credential: str) -> tuple[str, str]:
    """Split ``<agent_id>.<secret>``; the agent ID must be a UUID."""
    agent_id, dot, secret = credential.partition(".")
    if not dot or not secret or len(credential) > 200:
        raise Unauthorized("not an agent credential")
    try:
        return str(uuid.UUID(agent_id)), secret
    except ValueError:
        raise Unauthorized("not an agent credential") from None


AUTH_COLUMNS = (
    "secret_hash",
    "next_secret_hash",
    "hostname",
    "instance_id",
    "previous_instance_id",
    "instance_changed_at",
    "identity_conflict_at",
    "labels",
    "group_name",
    "policy_version",
)
"""What :data:`_AUTHENTICATE` reads (``policy_version``: the current global version)."""


def identity_of(agent_id: str, secret: str, row: Mapping[str, Any] | None) -> AgentIdentity:
    """Check ``secret`` against the row of ``agent_id`` (None: unknown) in constant time.

    During a rotation both the old secret and the new one are valid; the first request
    with the new one (in a write transaction) makes it the only one, so a reply lost on
    the way to the agent can never lock it out.
    """
    # Compare even for unknown agents, so timing does not tell which agent IDs exist.
    matches = token_matches(secret, row["secret_hash"] if row is not None else _NO_HASH)
    rotated = (
        row is not None
        and not matches
        and row["next_secret_hash"] is not None
        and token_matches(secret, row["next_secret_hash"])
    )
    if row is not None and row["secret_hash"] == REVOKED:
        raise Unauthorized("this agent's credential was revoked: enroll it again")
    if row is None or not (matches or rotated):
        raise Unauthorized("invalid agent credential")
    return AgentIdentity(
        agent_id,
        row["hostname"],
        int(row["policy_version"] or 0),
        row["instance_id"],
        row["previous_instance_id"],
        row["instance_changed_at"],
        row["identity_conflict_at"],
        rotated,
        tuple(row["labels"] or ()),
        row["group_name"],
    )


def authenticate(connection: Connection, credential: str) -> AgentIdentity:
    """The agent behind ``<agent_id>.<secret>``, or Unauthorized (see :func:`identity_of`)."""
    agent_id, secret = parse_agent_credential(credential)
    row = connection.execute(_AUTHENTICATE, {"agent_id": agent_id}).first()
    return identity_of(agent_id, secret, dict(row._mapping) if row is not None else None)


def finish_rotation(connection: Connection, agent: AgentIdentity) -> None:
    """The agent proved it holds the new secret: the old one stops working now."""
    if agent.rotated:
        connection.execute(
            update(AGENTS)
            .where(AGENTS.c.agent_id == agent.agent_id)
            .values(secret_hash=AGENTS.c.next_secret_hash, next_secret_hash=None)
        )


def authenticate_agent(db: Database, credential: str) -> AgentIdentity:
    with db.read() as connection:
        return authenticate(connection, credential)


def connected_since(settings: Settings, now: datetime) -> datetime:
    """Agents whose last check-in is after this are connected."""
    return now - timedelta(seconds=settings.heartbeat_interval_s + settings.heartbeat_grace_s)


def health_of(row: Mapping[str, Any], settings: Settings, now: datetime) -> Health:
    """From an ``agents`` row; :func:`health_filter` is the same rule in SQL."""
    last, stopped = row["last_checkin_at"], row["stopped_at"]
    uninstalled = row["uninstalled_at"]
    if uninstalled is not None and (last is None or uninstalled >= last):
        return Health.UNINSTALLED
    if stopped is not None and (last is None or stopped >= last):
        return Health.STOPPED
    if last is None or last <= connected_since(settings, now):
        return Health.DISCONNECTED
    if row["isolated_at"] is not None:
        return Health.ISOLATED
    drift = policy_drift(row["policy_version"], row["policy_expected_version"])
    return Health.DEGRADED if row["issues"] or drift else Health.CONNECTED


def policy_drift(applied: int | None, expected: int | None) -> bool:
    """The agent reported another version than the one it had been sent (it did not apply it)."""
    return expected is not None and applied != expected


def status_of(modules: Sequence[Mapping[str, Any]]) -> OperationalStatus:
    """Protected when every enabled module is healthy, partially when some are, else not."""
    enabled = [m for m in modules if m.get("enabled") and m.get("mode") != "off"]
    healthy = [m for m in enabled if m.get("healthy")]
    if enabled and len(healthy) == len(enabled):
        return OperationalStatus.PROTECTED
    if healthy:
        return OperationalStatus.PARTIALLY_PROTECTED
    return OperationalStatus.UNPROTECTED


def health_filter(health: Health, since: datetime) -> ColumnElement[bool]:
    """:func:`health_of` as a WHERE clause (same rules, evaluated by the database)."""
    last, stopped = AGENTS.c.last_checkin_at, AGENTS.c.stopped_at
    gone = AGENTS.c.uninstalled_at
    is_uninstalled = and_(gone.is_not(None), or_(last.is_(None), gone >= last))
    is_stopped = and_(
        not_(is_uninstalled), stopped.is_not(None), or_(last.is_(None), stopped >= last)
    )
    isolated = AGENTS.c.isolated_at.is_not(None)
    is_recent = and_(last.is_not(None), last > since)
    expected, applied = AGENTS.c.policy_expected_version, AGENTS.c.policy_version
    drift = and_(expected.is_not(None), or_(applied.is_(None), applied != expected))
    fine = and_(cast(AGENTS.c.issues, String) == "[]", not_(drift))
    if health is Health.UNINSTALLED:
        return is_uninstalled
    if health is Health.STOPPED:
        return is_stopped
    up = and_(not_(is_uninstalled), not_(is_stopped))
    if health is Health.DISCONNECTED:
        return and_(up, not_(is_recent))
    if health is Health.ISOLATED:
        return and_(up, is_recent, isolated)
    if health is Health.DEGRADED:
        return and_(up, is_recent, not_(isolated), not_(fine))
    return and_(up, is_recent, not_(isolated), fine)


def _time(value: datetime | None) -> str | None:
    """As pydantic writes an aware datetime: ISO 8601, ``Z`` for UTC."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def _module(module: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": module["name"],
        "enabled": bool(module["enabled"]),
        "mode": module["mode"],
        "mechanism": module["mechanism"],
        "healthy": bool(module["healthy"]),
        "detail": module.get("detail", ""),
    }


def _footprint(footprint: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not footprint:
        return None
    return {
        "rss_bytes": int(footprint["rss_bytes"]),
        "cpu_percent": float(footprint["cpu_percent"]),
        "disk_bytes": int(footprint["disk_bytes"]),
    }


def agent_fields(row: Mapping[str, Any], settings: Settings, now: datetime) -> dict[str, Any]:
    """One ``agents`` row as the JSON object of :class:`AgentPublic` (the listing sends it
    as it is; :func:`agent_public` validates it into the model)."""
    modules = row["modules"] or []
    applied, expected = row["policy_version"], row["policy_expected_version"]
    drift = policy_drift(applied, expected)
    issues = list(row["issues"] or [])
    if drift:
        issues.append(f"policy version {applied} applied, {expected} sent")
    return {
        "agent_id": row["agent_id"],
        "hostname": row["hostname"],
        "os": row["os"],
        "os_version": row["os_version"],
        "agent_version": row["agent_version"],
        "ips": list(row["ips"] or []),
        "enrolled_at": _time(row["enrolled_at"]),
        "last_checkin_at": _time(row["last_checkin_at"]),
        "health": health_of(row, settings, now).value,
        "issues": issues,
        "status": status_of(modules).value,
        "modules": [_module(m) for m in modules],
        "footprint": _footprint(row["footprint"]),
        "policy_version": applied,
        "outbox_depth": row["outbox_depth"],
        "events_dropped": row["events_dropped"],
        "labels": list(row["labels"] or []),
        "group": row["group_name"],
        "expected_policy_version": expected,
        "policy_drift": drift,
    }


def agent_public(row: Agent, settings: Settings, now: datetime) -> AgentPublic:
    return AgentPublic.model_validate(agent_fields(row.model_dump(), settings, now))

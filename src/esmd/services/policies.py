"""Policy changes: apply (create or update by name, all or nothing), delete, history, explain.

Each change runs in one transaction that writes the policies, bumps the global version,
records a history row (who, when, what changed, a snapshot of every policy) and one audit
record. Nothing is written when any policy of an apply is invalid.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlmodel import Session

from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.db.tables_policies import POLICIES, POLICY_HISTORY
from esmd.errors import BadRequest, NotFound
from esmd.services.audit import audit
from esmd.services.policy import PolicyCache, current_version
from esmd.services.policy_defaults import BUILTIN, DEFAULT_POLICY
from esmd.services.policy_history import policy_rows, record_version, spec_of
from esmd.services.policy_resolve import Target, explain_settings
from esmd.timeutil import utcnow
from trapsapi.models_policies import (
    PolicyApplyResult,
    PolicyChange,
    PolicyExplain,
    PolicyFile,
    PolicyHistoryEntry,
    PolicyMatch,
    PolicyRecord,
    PolicySkip,
    PolicySpec,
    SettingExplain,
    parse_policy_file,
)

PBKDF2_ITERATIONS = 200_000


def hash_password(
    plain: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS
) -> str:
    """``pbkdf2-sha256$iterations$salt$hash``: what agents get (they verify with hashlib)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", plain.encode(), salt, iterations)
    return f"pbkdf2-sha256${iterations}${salt.hex()}${digest.hex()}"


def password_matches(plain: str, hashed: str) -> bool:
    try:
        _scheme, iterations, salt, _digest = hashed.split("$")
        expected = hash_password(plain, bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, hashed)


def canonical(spec: PolicySpec, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored form: unset rules and empty target lists left out, passwords hashed.

    A plain uninstall password that the stored hash already verifies keeps that hash, so
    applying the same file twice changes nothing.
    """
    rules = spec.rules.model_dump(mode="json", exclude_none=True)
    agent = rules.get("agent")
    if agent and "uninstall_password" in agent:
        plain = agent.pop("uninstall_password")
        old = ((stored or {}).get("rules") or {}).get("agent", {}).get("uninstall_password_hash")
        keep = isinstance(old, str) and password_matches(plain, old)
        agent["uninstall_password_hash"] = old if keep else hash_password(plain)
    return {
        "name": spec.name,
        "description": spec.description,
        "priority": spec.priority,
        "enabled": spec.enabled,
        "targets": spec.targets.model_dump(mode="json", exclude_defaults=True),
        "rules": rules,
    }


def record_of(row: Any) -> PolicyRecord:
    return PolicyRecord.model_validate(row, from_attributes=True)


def list_policies(db: Database) -> list[PolicyRecord]:
    with db.read() as connection:
        return [record_of(r) for r in policy_rows(connection)]


def get_policy(db: Database, name: str) -> PolicyRecord:
    with db.read() as connection:
        row = connection.execute(select(POLICIES).where(POLICIES.c.name == name)).first()
    if row is None:
        raise NotFound(f"no policy {name!r}")
    return record_of(row)


def _history(
    session: Session, actor: str, action: str, policy: str, changes: dict[str, Any]
) -> int:
    return record_version(session.connection(), actor, action, policy, changes)


def _plan(connection: Connection, parsed: PolicyFile) -> list[PolicyChange]:
    names = [p.name for p in parsed.policies]
    rows = connection.execute(select(POLICIES).where(POLICIES.c.name.in_(names))).all()
    stored = {r.name: spec_of(r) for r in rows}
    plan = []
    for spec in parsed.policies:
        before = stored.get(spec.name)
        after = canonical(spec, before)
        if before is None:
            action = "created"
        else:
            action = "unchanged" if before == after else "updated"
        plan.append(PolicyChange(name=spec.name, action=action, before=before, after=after))
    return plan


def apply_policies(
    db: Database, body: Any, actor: str, source_ip: str | None, *, dry_run: bool = False
) -> PolicyApplyResult:
    """Create or update every policy of ``body`` by name, in one transaction, or none."""
    try:
        parsed = parse_policy_file(body)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    with db.write_session() as session:
        connection = session.connection()
        plan = _plan(connection, parsed)
        changed = [c for c in plan if c.action != "unchanged"]
        if dry_run:
            return PolicyApplyResult(
                dry_run=True, version=current_version(connection), changes=plan
            )
        now = utcnow()
        for change in changed:
            after = change.after or {}
            if change.action == "created":
                connection.execute(
                    insert(POLICIES).values(
                        **after, created_at=now, updated_at=now, updated_by=actor
                    )
                )
            else:
                connection.execute(
                    update(POLICIES)
                    .where(POLICIES.c.name == change.name)
                    .values(**after, updated_at=now, updated_by=actor)
                )
        summary = {c.name: c.action for c in plan}
        version = (
            _history(session, actor, "apply", ",".join(c.name for c in changed), summary)
            if changed
            else current_version(connection)
        )
        audit(
            session,
            actor,
            "policy.apply",
            ",".join(c.name for c in plan),
            {"changes": summary, "version": version},
            source_ip=source_ip,
        )
        return PolicyApplyResult(dry_run=False, version=version, changes=plan)


def delete_policy(db: Database, name: str, actor: str, source_ip: str | None) -> int:
    with db.write_session() as session:
        connection = session.connection()
        row = connection.execute(select(POLICIES).where(POLICIES.c.name == name)).first()
        if row is None:
            raise NotFound(f"no policy {name!r}")
        connection.execute(delete(POLICIES).where(POLICIES.c.name == name))
        version = _history(session, actor, "delete", name, {name: "deleted"})
        audit(
            session,
            actor,
            "policy.delete",
            name,
            {"version": version, "before": spec_of(row)},
            source_ip=source_ip,
        )
        return version


def history(db: Database, policy: str | None, limit: int, offset: int) -> list[PolicyHistoryEntry]:
    statement = select(POLICY_HISTORY).order_by(POLICY_HISTORY.c.version.desc())
    if policy:
        # A policy's own entries: the row names every policy the change touched.
        statement = statement.where(POLICY_HISTORY.c.policy.contains(policy, autoescape=True))
    with db.read() as connection:
        rows = connection.execute(statement.offset(offset).limit(limit)).all()
    entries = [PolicyHistoryEntry.model_validate(r, from_attributes=True) for r in rows]
    if policy:
        entries = [e for e in entries if policy in e.policy.split(",")]
    return entries


def create_default_policies(db: Database, actor: str = "esmd-init") -> bool:
    """Create the shipped default policy when no policy exists yet (a fresh ESM)."""
    with db.write_session() as session:
        connection = session.connection()
        if connection.execute(select(POLICIES.c.id).limit(1)).first() is not None:
            return False
        if connection.execute(select(POLICY_HISTORY.c.id).limit(1)).first() is not None:
            return False  # the admins deleted every policy on purpose: respect it
        now = utcnow()
        spec = canonical(PolicySpec.model_validate(DEFAULT_POLICY))
        connection.execute(
            insert(POLICIES).values(**spec, created_at=now, updated_at=now, updated_by=actor)
        )
        _history(session, actor, "init", spec["name"], {spec["name"]: "created"})
        return True


def explain(db: Database, policies: PolicyCache, agent_id: str) -> PolicyExplain:
    with db.read() as connection:
        row = connection.execute(
            select(
                AGENTS.c.agent_id,
                AGENTS.c.hostname,
                AGENTS.c.os,
                AGENTS.c.labels,
                AGENTS.c.group_name,
            ).where(AGENTS.c.agent_id == agent_id)
        ).first()
        if row is None:
            raise NotFound(f"no agent {agent_id!r}")
        snap = policies.snapshot(connection)
    target = Target(row.hostname, row.os or "", tuple(row.labels or ()), row.group_name)
    resolution = snap.resolve(target)
    # Unset, the heartbeat is the server's own setting: show that as its built-in value.
    builtin = {**BUILTIN, "agent.heartbeat_interval_s": policies.heartbeat_interval_s}
    return PolicyExplain(
        agent_id=row.agent_id,
        hostname=row.hostname,
        os=row.os or "",
        labels=list(target.labels),
        group=target.group,
        version=snap.version,
        matched=[
            PolicyMatch(
                name=r.policy.name,
                priority=r.policy.priority,
                specificity=r.match.specificity,
                matched=r.match.matched,
            )
            for r in resolution.ranked
        ],
        skipped=[PolicySkip(name=n, reason=why) for n, why in resolution.skipped],
        settings=[
            SettingExplain.model_validate(s) for s in explain_settings(resolution.ranked, builtin)
        ],
        effective=snap.policy_for(target),
    )

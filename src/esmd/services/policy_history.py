"""Policy versions and their history: every bump of what agents enforce is recorded.

Agents pull one version number that covers the policies *and* the enforced hash lists (the
admin overrides and the feeds' malware/benign verdicts). :func:`record_version` is the one way
to bump it: it writes the history row (who, when, what changed, a snapshot of every policy),
so ``policies history`` explains every version an agent may report, verdict changes included.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from esmd.db.tables_policies import POLICIES, POLICY_HISTORY
from esmd.services.policy import bump_version, current_version
from esmd.timeutil import utcnow

SPEC_FIELDS = ("name", "description", "priority", "enabled", "targets", "rules")


def spec_of(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in SPEC_FIELDS}


def policy_rows(connection: Connection) -> list[Any]:
    return list(connection.execute(select(POLICIES).order_by(POLICIES.c.name)).all())


def record_version(
    connection: Connection, actor: str, action: str, policy: str, changes: dict[str, Any]
) -> int:
    """Bump the version agents pull, inside the caller's transaction, and record why; the
    new version. ``policy`` names the policies changed ("" for a change of hash verdicts)."""
    bump_version(connection)
    version = current_version(connection)
    connection.execute(
        insert(POLICY_HISTORY).values(
            version=version,
            at=utcnow(),
            actor=actor[:128],
            action=action[:32],
            policy=policy[:255],
            changes=changes,
            snapshot=[spec_of(r) for r in policy_rows(connection)],
        )
    )
    return version

"""The effective agent policy, cached per process and revalidated by version on every use.

Every change that affects the policy bumps ``policy_state.version`` in its own transaction.
A check-in reads that one row (a primary-key lookup) and rebuilds the cached policy only when
the version moved, so any number of esmd processes sharing the database stay consistent.
"""

from __future__ import annotations

import threading

from sqlalchemy import Connection, select, update

from esmd.db.tables import HASH_VERDICTS, POLICY_STATE
from esmd.services.wake import policy_bumped
from trapsapi.enums import Mode, Verdict
from trapsapi.models import AgentPolicy, ModulePolicy

POLICY_ROW = 1


def current_version(connection: Connection) -> int:
    version = connection.execute(
        select(POLICY_STATE.c.version).where(POLICY_STATE.c.id == POLICY_ROW)
    ).scalar_one_or_none()
    return int(version or 0)


def bump_version(connection: Connection) -> None:
    """Call inside the transaction of any change to what agents enforce."""
    connection.execute(
        update(POLICY_STATE)
        .where(POLICY_STATE.c.id == POLICY_ROW)
        .values(version=POLICY_STATE.c.version + 1)
    )
    # Waiting agents learn of it when this transaction commits (esmd.services.wake).
    policy_bumped(connection, current_version(connection))


def default_modules() -> dict[str, ModulePolicy]:
    return {"malware": ModulePolicy(enabled=True, mode=Mode.PREVENTION, user_alert=True)}


def build_policy(connection: Connection, version: int, heartbeat_interval_s: int) -> AgentPolicy:
    rows = connection.execute(
        select(HASH_VERDICTS.c.sha256, HASH_VERDICTS.c.verdict)
        .where(HASH_VERDICTS.c.verdict.in_([Verdict.MALWARE.value, Verdict.BENIGN.value]))
        .order_by(HASH_VERDICTS.c.sha256)
    ).all()
    blocked = [sha for sha, verdict in rows if verdict == Verdict.MALWARE.value]
    allowed = [sha for sha, verdict in rows if verdict == Verdict.BENIGN.value]
    return AgentPolicy(
        version=version,
        heartbeat_interval_s=heartbeat_interval_s,
        modules=default_modules(),
        blocked_hashes=blocked,
        allowed_hashes=allowed,
    )


class PolicyCache:
    """The policy of the newest version this process has seen."""

    def __init__(self, heartbeat_interval_s: int) -> None:
        self.heartbeat_interval_s = heartbeat_interval_s
        self._policy: AgentPolicy | None = None
        self._lock = threading.Lock()

    def get(self, connection: Connection, version: int | None = None) -> AgentPolicy:
        """The policy of ``version`` (read now if not given), rebuilt only when it moved.

        The version must be read before the hashes: content can then only be newer than
        its label, never older, so an agent is never told it is current while it is not.
        """
        if version is None:
            version = current_version(connection)
        policy = self._policy
        if policy is not None and policy.version == version:
            return policy
        with self._lock:
            policy = self._policy
            if policy is None or policy.version != version:
                policy = build_policy(connection, version, self.heartbeat_interval_s)
                if self._policy is None or self._policy.version < version:
                    self._policy = policy
        return policy

"""What the wake channel tells is visible in the database when readers act on it.

The engine's commit event runs before the database commits: agents are woken only when the
connection goes back to the pool, and a policy version learnt ahead of the database never
labels older content (agents would believe they were current without the change).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import Any

from esmd.db.engine import Database
from esmd.db.tables import HashVerdict
from esmd.metrics import Metrics
from esmd.services.policy import PolicyCache, bump_version, current_version
from esmd.services.wake import Notifier, notify_agents
from esmd.timeutil import utcnow

BLOCKED = "d" * 64


def test_a_version_ahead_of_the_database_waits_for_its_commit(esm_settings: Any) -> None:
    db = Database.from_url(esm_settings.url, 2, 0)
    with db.read() as connection:
        version = current_version(connection)
    bumped = threading.Event()

    def block_a_hash_and_commit_late() -> None:
        with db.write_session() as session:
            session.add(
                HashVerdict(sha256=BLOCKED, verdict="malware", updated_at=utcnow(), updated_by="t")
            )
            session.flush()
            bump_version(session.connection())
            bumped.set()  # what the commit hook tells the wake channel, before the commit
            time.sleep(0.3)

    writer = threading.Thread(target=block_a_hash_and_commit_late)
    writer.start()
    try:
        assert bumped.wait(10)
        with db.write() as connection:  # as the wake channel's delivery reads it
            policy = PolicyCache(60).get(connection, version + 1)
    finally:
        writer.join()
        db.dispose()
    assert policy.version == version + 1
    assert policy.blocked_hashes == [BLOCKED]


def test_agents_are_woken_only_once_the_change_is_committed(esm_settings: Any) -> None:
    """The engine's commit event runs before the database commits; a slow commit there must
    not let a woken reader see the state before the change (the action it was woken for)."""
    db = Database.from_url(esm_settings.url, 2, 0)
    with db.read() as connection:
        version = current_version(connection)
    seen: list[int] = []

    async def scenario() -> None:
        notifier = Notifier(Metrics(), wake_rate=100_000.0)
        notifier.start(version)

        def woken(agent_ids: Iterable[str]) -> None:
            with db.read() as reader:
                seen.append(current_version(reader))

        notifier.agents_notified = woken  # type: ignore[method-assign]
        db.listen("commit", notifier.on_commit)
        db.listen("rollback", notifier.on_rollback)
        db.listen("checkin", notifier.on_checkin)
        db.listen("commit", lambda connection: time.sleep(0.3))  # a commit that takes long

        def change() -> None:
            with db.write() as connection:
                bump_version(connection)
                notify_agents(connection, ["agent-1"])

        await asyncio.to_thread(change)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        await notifier.stop()

    try:
        asyncio.run(scenario())
    finally:
        db.dispose()
    assert seen == [version + 1]

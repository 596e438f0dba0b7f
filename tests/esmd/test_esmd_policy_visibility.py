"""A policy version learnt ahead of the database never labels older content.

The wake channel hears of a new version from the engine's commit hook, which runs as the
change commits, not after; a reader woken by it must not build "version N+1" from what it
still sees of version N (agents would believe they were current without the change).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from esmd.db.engine import Database
from esmd.db.tables import HashVerdict
from esmd.services.policy import PolicyCache, bump_version, current_version
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

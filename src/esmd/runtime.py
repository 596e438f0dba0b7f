"""The background work of a serving process: the wake channel and the registry heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.services.policy import current_version
from esmd.services.registry import Registry
from esmd.services.wake import Notifier

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def background(
    settings: Settings, db: Database, notifier: Notifier, registry: Registry
) -> AsyncIterator[None]:
    """Start the notifier (LISTEN on PostgreSQL) and the heartbeat; stop both on exit."""
    with db.read() as connection:
        version = current_version(connection)
    notifier.start(version, settings.url)
    db.listen("commit", notifier.on_commit)
    db.listen("rollback", notifier.on_rollback)
    db.listen("checkin", notifier.on_checkin)  # after the commit: see Notifier.on_commit
    await _beat(db, notifier, registry)  # registered before the first request is served
    loop = asyncio.get_running_loop()
    learned = asyncio.Event()

    def wake_heartbeat() -> None:
        loop.call_soon_threadsafe(learned.set)

    registry.on_learned = wake_heartbeat
    task = loop.create_task(_heartbeat(settings, db, notifier, registry, learned))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await db.run(registry.leave)
        await notifier.stop()


async def _heartbeat(
    settings: Settings,
    db: Database,
    notifier: Notifier,
    registry: Registry,
    learned: asyncio.Event,
) -> None:
    while True:
        with contextlib.suppress(TimeoutError):
            # A beat at once when the address becomes known (the first request).
            await asyncio.wait_for(learned.wait(), settings.server_heartbeat_s)
        learned.clear()
        await _beat(db, notifier, registry)


async def _beat(db: Database, notifier: Notifier, registry: Registry) -> None:
    try:
        version = await db.run(registry.beat)
    except Exception as exc:  # the database is away: serve on, try again next period
        log.warning("server registry heartbeat failed: %s", exc)
    else:
        notifier.saw_version(version)
    notifier.sweep()

"""The wake channel across processes: PostgreSQL ``LISTEN esmd_wake``.

Each esmd process keeps one psycopg async connection listening (reconnected with backoff).
A policy change arrives as ``policy:<version>``, a revoked credential as
``credentials:<agent>``, an action as ``action:<id>`` (the process reads which of the
action's agents are still pending, one query) and a plain notification as
``agents:<id>,<id>,...``; see :mod:`esmd.services.wake`.
"""

from __future__ import annotations

import asyncio
import logging
import random

from sqlalchemy.engine import make_url

from esmd.services.wake import CHANNEL, CREDENTIALS, POLICY, Notifier

log = logging.getLogger(__name__)


async def listen(notifier: Notifier, database_url: str) -> None:
    """LISTEN on the wake channel and apply what other processes' transactions NOTIFY
    (reconnected with backoff; nobody is woken while the database is away)."""
    import psycopg

    conninfo = make_url(database_url).set(drivername="postgresql")
    dsn = conninfo.render_as_string(hide_password=False)
    delay = 1.0
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                delay = 1.0
                if notifier.news_listener is not None:
                    notifier.news_listener(None)  # what came while not listening is unknown
                async for note in conn.notifies():
                    await deliver(notifier, note.payload)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: retry, wake nobody meanwhile
            log.warning("wake channel: LISTEN failed (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 30.0)


async def deliver(notifier: Notifier, payload: str) -> None:
    """Apply one notification."""
    kind, _, value = payload.partition(":")
    if kind == POLICY and value.isdigit():
        notifier.policy_moved(int(value))
    elif kind == CREDENTIALS and value:
        notifier.credentials_revoked([value])
    elif kind == "agents":
        notifier.agents_notified(a for a in value.split(",") if a)
    elif kind == "action" and value and notifier.action_agents is not None:
        try:
            ids = await notifier.action_agents(value)
        except Exception as exc:  # a check-in or the next poll will still bring it
            log.warning("wake channel: cannot read the agents of action %s: %s", value, exc)
            return
        notifier.agents_notified(ids)  # those already served are no longer pending

"""The hook a wake channel plugs into: ``notify_agents`` tells listeners which agents have
something new (e.g. a just-created action), so a long-poll can answer them at once.

With no listener registered (today) it does nothing: agents get their actions at their next
check-in. Listeners run in the caller's thread after the commit; they must not block.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)
Listener = Callable[[frozenset[str]], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Register ``listener``; returns the function that unregisters it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener)


def notify_agents(agent_ids: Iterable[str]) -> None:
    ids = frozenset(agent_ids)
    if not ids:
        return
    for listener in list(_listeners):
        try:
            listener(ids)
        except Exception:  # a broken listener never fails the change that was committed
            log.exception("wake listener failed")

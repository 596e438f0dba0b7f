"""The wake channel: one long-poll to the ESM, held by a thread of its own.

The server holds ``GET /agent/wait`` until the policy moved past the version this agent
applied or something is pending for it (200), or until its timeout (204). The poll asks for
the news itself (``deliver``): the reply carries the new policy and the pending actions,
handed to the comms thread to apply, so a policy change or an action reaches the agent
within about a second and costs no extra request (the policy applied is reported by a
check-in at a random moment within the server's ``report_within_s``). From a server that
only says why, the comms thread checks in at once instead. The thread never touches
fanotify; it has its own connection (with a socket timeout longer than the hold) and
fails over along the server list like every other request. Errors back off with jitter; a
server without the wake channel (404) is asked again only after the longest backoff.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from trapsapi.agent_client import AgentClient
from trapsapi.errors import ApiError, AuthError, RateLimited, TrapsError
from trapsd.config import AgentSettings

log = logging.getLogger(__name__)
SOCKET_SLACK_S = 15.0


class Waker:
    """Keeps one long-poll open while the agent runs (see the module docstring)."""

    def __init__(
        self,
        settings: AgentSettings,
        client: Callable[[float], AgentClient],
        policy_version: Callable[[], int | None],
        on_wake: Callable[[str], None],
        on_news: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self.settings = settings
        self._make_client = client
        self._policy_version = policy_version
        self._on_wake = on_wake
        self._on_news = on_news
        self._stopping = threading.Event()
        self._kick = threading.Event()
        self._client: AgentClient | None = None
        self.wakeups = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="wake", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def kick(self) -> None:
        """A check-in happened: the policy version to wait on may be known now."""
        self._kick.set()

    def stop(self, timeout: float = 3.0) -> None:
        self._stopping.set()
        self._kick.set()
        # Abort until the thread is gone: a poll may start on a client built just after an
        # abort found none (an aborted client itself refuses every later request).
        deadline = time.monotonic() + timeout
        while self._thread.is_alive() and time.monotonic() < deadline:
            client = self._client
            if client is not None:
                client.abort()  # ends a held poll at once
            self._thread.join(0.1)
        if self._client is not None and not self._thread.is_alive():
            self._client.close()  # (a stuck poll holds its lock: never wait for it)

    def restart_client(self) -> None:
        """After an error: the next poll uses a client built from the current server list."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            version = self._policy_version()
            if version is None:  # no check-in yet: nothing to compare with, sleep until one
                self._kick.wait()
                self._kick.clear()
                continue
            delay = self._poll(version)
            if delay < 0:  # a new policy: poll again once it is applied (or 10 s passed)
                for _ in range(100):
                    if self._stopping.wait(0.1) or self._policy_version() != version:
                        break
            elif delay:
                self._stopping.wait(delay)

    def _poll(self, version: int) -> float:
        """One long-poll; returns how long to pause before the next (< 0: until the
        policy version moves)."""
        hold = self.settings.wait_timeout_s
        if self._client is None:
            self._client = self._make_client(hold + SOCKET_SLACK_S)
        try:
            reply = self._client.wait(version, hold, deliver=self._on_news is not None)
        except RateLimited as exc:
            self.failures += 1
            return exc.retry_after * (1 + random.random() / 2)  # jitter, not crypto
        except (AuthError, ApiError, TrapsError) as exc:
            if self._stopping.is_set():
                return 0.0
            self.failures += 1
            self.restart_client()  # the next try starts over along the (maybe new) list
            status = getattr(exc, "status", 0)
            if status in (404, 405):  # a server without the wake channel
                return self.settings.backoff_max_s
            growth: float = 2.0 ** min(self.failures, 16)
            ceiling = min(self.settings.backoff_max_s, self.settings.backoff_min_s * growth)
            log.debug("wake channel: %s (retry in at most %.0f s)", exc.message, ceiling)
            return ceiling * (0.5 + random.random() / 2)
        self.failures = 0
        if reply is None:
            return 0.0
        self.wakeups += 1
        reason = str(reply.get("reason", ""))
        if self._on_news is not None and "actions" in reply:  # the news itself
            self._on_news(reply)
            return -1.0 if reply.get("policy") else 0.0
        self._on_wake(reason)
        return -1.0 if reason == "policy" else 0.5

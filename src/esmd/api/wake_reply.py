"""The long-poll's work, shared by the FastAPI route and the ASGI fast path.

Authenticate (one primary-key read), hold the poll in the process's ``Notifier`` and answer:
204 at the timeout, else the reason, and with ``deliver`` the news itself (the agent's new
policy as cached JSON, its pending actions) built for a whole batch of woken agents at once.
"""

from __future__ import annotations

import json
import time
from typing import Any

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.errors import TooManyRequests
from esmd.security import token_hash
from esmd.services.policy import PolicyCache
from esmd.services.wake import Notifier, Waiter
from esmd.services.wake_news import Caller, action_agents, authenticate_waiter, gather_news
from trapsapi.models import AgentPolicy


class PolicyJson:
    """The JSON of the last few policies sent (check-in and wake replies), keyed by the
    (cached) policy object itself."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._cache: dict[int, tuple[AgentPolicy, bytes]] = {}

    def get(self, policy: AgentPolicy) -> bytes:
        hit = self._cache.get(id(policy))
        if hit is not None and hit[0] is policy:
            return hit[1]
        raw = policy.__pydantic_serializer__.to_json(policy)
        if len(self._cache) >= self.size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[id(policy)] = (policy, raw)  # holding it keeps its id unique
        return raw


class WakeNews:
    """The notifier's deliverer: one transaction per batch, replies as bytes."""

    def __init__(self, db: Database, policies: PolicyCache, settings: Settings) -> None:
        self.db = db
        self.policies = policies
        self.settings = settings
        self.policy_bytes = PolicyJson()
        self.notifier: Notifier | None = None

    def attach(self, notifier: Notifier) -> None:
        notifier.deliverer = self.deliver
        notifier.action_agents = self.action_agents
        self.notifier = notifier

    async def action_agents(self, action_id: str) -> list[str]:
        return await self.db.run(action_agents, action_id)

    async def deliver(self, batch: list[tuple[Waiter, str]], version: int) -> dict[str, bytes]:
        agents = [(w.agent_id, w.news, w.known_version < version) for w, _ in batch]
        news = await self.db.run(gather_news, self.policies, agents, version)
        waiting = self.notifier.waiting if self.notifier is not None else len(batch)
        # Agents that got a new policy report it by a check-in spread over this window, so
        # the confirmations come at a steady rate too.
        report = round(max(5.0, waiting / self.settings.wake_report_rate), 1)
        bodies: dict[str, bytes] = {}
        for waiter, reason in batch:
            policy, actions = news.get(waiter.agent_id, (None, []))
            head = f'{{"reason":"{reason}","policy_version":{version}'.encode()
            parts = [head]
            if policy is not None:
                parts += [b',"policy":', self.policy_bytes.get(policy)]
                parts.append(f',"report_within_s":{report}'.encode())
            parts += [b',"actions":', json.dumps(actions, separators=(",", ":")).encode(), b"}"]
            bodies[waiter.agent_id] = b"".join(parts)
        return bodies


class Repolls:
    """Who was authenticated on which connection, for the poll that follows on it.

    An agent polls again on the same keep-alive connection right after a reply; within the
    hold time that is the client the database just vouched for (its held poll would have
    lasted that long anyway), so the re-poll after a broadcast costs no database read. A
    revocation or deletion (in any process: :func:`esmd.services.wake.credentials_changed`)
    makes the agent's next re-poll authenticate again, and fail.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._seen: dict[tuple[Any, str], tuple[Caller, float]] = {}

    def get(self, client: Any, credential: str) -> Caller | None:
        if client is None:
            return None
        hit = self._seen.get((tuple(client), token_hash(credential)))
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def forget(self, agent_ids: list[str]) -> None:
        gone = set(agent_ids)
        self._seen = {k: v for k, v in self._seen.items() if v[0].identity.agent_id not in gone}

    def put(self, client: Any, credential: str, caller: Caller) -> None:
        if client is None:
            return
        now = time.monotonic()
        if len(self._seen) > 1000 and len(self._seen) % 1000 == 0:
            self._seen = {k: v for k, v in self._seen.items() if v[1] >= now}
        self._seen[(tuple(client), token_hash(credential))] = (caller, now + self.ttl_s)


async def hold(
    state: Any,
    credential: str,
    policy_version: int,
    timeout: int | None,
    deliver: bool,
    client: Any = None,
) -> tuple[int, bytes]:
    """(status, body) of one long-poll (TooManyRequests when the process holds too many);
    ``client``: the (address, port) of the connection, to recognise a re-poll on it."""
    settings: Settings = state.settings
    notifier: Notifier = state.notifier
    repolls: Repolls = state.repolls
    caller = repolls.get(client, credential)
    if caller is None:
        caller = await state.db.run(authenticate_waiter, credential)
        repolls.put(client, credential, caller)
    if notifier.waiting >= settings.max_waiters:
        raise TooManyRequests("server busy: too many agents waiting", settings.retry_after_s)
    seconds = min(timeout or settings.wait_timeout_s, settings.wait_timeout_s)
    news = caller.target if deliver else None
    wake = await notifier.wait(caller.identity.agent_id, policy_version, seconds, news)
    if wake is None:
        return 204, b""
    if wake.body is not None:
        return 200, wake.body
    reply = {"reason": wake.reason, "policy_version": wake.policy_version}
    return 200, json.dumps(reply, separators=(",", ":")).encode()


def wait_query(raw: bytes) -> tuple[int, int | None, bool] | None:
    """(policy_version, timeout, deliver) of a plain, valid long-poll query, else None."""
    values: dict[str, str] = {}
    for part in raw.decode("latin-1").split("&"):
        name, _, value = part.partition("=")
        if name in values or name not in ("policy_version", "timeout", "deliver"):
            return None
        values[name] = value
    version, timeout = values.get("policy_version", ""), values.get("timeout")
    deliver = values.get("deliver", "false")
    if not version.isdigit() or len(version) > 18 or deliver not in ("true", "false", "1", "0"):
        return None
    if timeout is not None and not (timeout.isdigit() and 1 <= int(timeout) <= 60):
        return None
    return int(version), int(timeout) if timeout else None, deliver in ("true", "1")

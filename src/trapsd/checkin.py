"""Talking to the ESM: check-ins and event upload, on one thread that owns the client.

Check-in happens at start, every heartbeat interval, right after a security event and when
asked (control socket). Failures back off exponentially with jitter up to ``backoff_max_s``;
the server pool fails over along the server list on every request. Outbox rows are deleted
only for the ids the server acknowledged.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from trapsapi.agent_client import AgentClient
from trapsapi.errors import ApiError, AuthError, ExitCode, RateLimited, TrapsError
from trapsapi.wire import CheckinRequest, CheckinResponse
from trapsd.config import AgentSettings
from trapsd.identity import Identity, advertised_servers, merge_servers, save_identity
from trapsd.outbox import Outbox

log = logging.getLogger(__name__)
MAX_ROUNDS = 20  # upload batches per cycle before a due check-in gets its turn
POISON_STATUSES = (400, 413, 422)  # the server will never take this batch as it is

Result = dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Result = {}


class Comms:
    def __init__(
        self,
        settings: AgentSettings,
        identity: Identity,
        outbox: Outbox,
        build_request: Callable[[], CheckinRequest],
        on_reply: Callable[[CheckinResponse], None],
        on_attempt: Callable[[], None] = lambda: None,
        on_news: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.outbox = outbox
        self.build_request = build_request
        self.on_reply = on_reply
        self.on_attempt = on_attempt
        self.on_news = on_news
        self._news: list[dict[str, Any]] = []
        self.client = self._client()
        self.heartbeat_s = 3600.0
        self.policy_version: int | None = None
        self.last_checkin: Result | None = None
        self.last_success: str | None = None
        self.last_upload_error: str | None = None
        self.failures = 0
        self._retry_at = 0.0
        self._upload_at = 0.0  # replay rate limit: the next batch of a backlog not before
        self._next_heartbeat = 0.0  # check in at start
        self._checkin_wanted = True
        self._events_wanted = outbox.depth > 0
        self._batch = settings.batch_size
        self._waiters: list[_Waiter] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="comms", daemon=True)

    def _client(self) -> AgentClient:
        return AgentClient(
            self.identity.servers,
            self.identity.agent_id,
            self.identity.agent_secret,
            self.settings.request_timeout_s,
            self.identity.ca_file or self.settings.ca_file,
            self.identity.pin_sha256 or None,
        )

    # --- requests from other threads -------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def rotate_now(self, timeout: float) -> Result:
        """Rotate the agent's credential on the comms thread and return the result."""
        waiter = _Waiter()
        waiter.result = {"rotate": True}
        with self._cond:
            self._waiters.append(waiter)
            self._cond.notify_all()
        if not waiter.done.wait(timeout):
            return {"ok": False, "error": "timed out waiting for the rotation", "exit_code": 1}
        return waiter.result

    def _rotate(self) -> Result:
        """New secret from the server, saved, then proven by a check-in with it.

        Until that check-in the server accepts both secrets, so a crash between the steps
        leaves the agent with a secret that works (the saved one, old or new).
        """
        try:
            reply = self.client.rotate()
            self.identity.agent_secret = reply["agent_secret"]
            save_identity(self.settings.state_dir, self.identity)
        except (TrapsError, OSError) as exc:
            message = exc.message if isinstance(exc, TrapsError) else str(exc)
            return self._result(False, f"rotation failed: {message}", ExitCode.ERROR)
        old, self.client = self.client, self._client()
        old.close()
        result = self._checkin()
        result["rotated"] = bool(result["ok"])
        return result

    def farewell(self) -> None:
        """After :meth:`stop`: tell the ESM the agent is stopping, if it was reachable.

        One attempt, so a stop never waits on a dead server; the check-in request carries
        ``stopping`` (the daemon sets it before it stops the comms thread).
        """
        if not (self.last_checkin and self.last_checkin.get("ok")):
            return
        try:
            self.client.checkin(self.build_request())
        except TrapsError as exc:
            log.info("could not tell the ESM that the agent stops: %s", exc.message)

    def notify_events(self, checkin: bool = True) -> None:
        """New events are in the outbox: send them now and check in (cuts a long backoff)."""
        with self._cond:
            self._events_wanted = True
            self._checkin_wanted = self._checkin_wanted or checkin
            # During an outage at most one attempt per backoff_min_s, however many events.
            self._retry_at = min(self._retry_at, time.monotonic() + self.settings.backoff_min_s)
            self._cond.notify_all()

    def set_heartbeat(self, seconds: float) -> None:
        with self._cond:
            if seconds != self.heartbeat_s:
                self._next_heartbeat = time.monotonic() + self._jittered(seconds)
            self.heartbeat_s = seconds

    def wake(self) -> None:
        """The wake channel says the server has news: check in now (within any backoff)."""
        with self._cond:
            self._checkin_wanted = True
            self._cond.notify_all()

    def news(self, reply: dict[str, Any]) -> None:
        """The wake channel brought news (policy, actions): apply it on the comms thread."""
        with self._cond:
            self._news.append(reply)
            self._cond.notify_all()

    def _apply_news(self, news: list[dict[str, Any]]) -> None:
        for reply in news:
            try:
                if self.on_news is not None:
                    self.on_news(reply)
            except TrapsError as exc:  # a policy it refuses: the next check-in tells why
                log.warning("news from the wake channel not applied: %s", exc.message)
                continue
            policy = reply.get("policy")
            if isinstance(policy, dict) and policy.get("version") is not None:
                self.policy_version = policy["version"]
                # Report the applied version by a check-in at a random moment in the window
                # the server gave, so a broadcast's confirmations do not come as a herd.
                window = float(reply.get("report_within_s") or 0)
                report = time.monotonic() + random.uniform(0, window)  # jitter, not crypto
                with self._cond:
                    self._next_heartbeat = min(self._next_heartbeat, report)

    def _jittered(self, seconds: float) -> float:
        spread = self.settings.heartbeat_jitter
        return seconds * (1 - spread + 2 * spread * random.random())  # jitter, not crypto

    def checkin_now(self, timeout: float) -> Result:
        """Check in immediately (whatever the backoff) and return the result."""
        waiter = _Waiter()
        with self._cond:
            self._waiters.append(waiter)
            self._cond.notify_all()
        if not waiter.done.wait(timeout):
            return {"ok": False, "error": "timed out waiting for the check-in", "exit_code": 1}
        return waiter.result

    def snapshot(self) -> dict[str, Any]:
        return {
            "server": self.client.server,
            "servers": list(self.identity.servers),
            "last_checkin": self.last_checkin,
            "last_success": self.last_success,
            "connected": bool(self.last_checkin and self.last_checkin.get("ok")),
            "heartbeat_interval_s": self.heartbeat_s,
            "failures": self.failures,
            "last_upload_error": self.last_upload_error,
        }

    # --- the comms thread ------------------------------------------------------------------
    def _run(self) -> None:
        due = False
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    due = self._checkin_wanted or now >= self._next_heartbeat
                    upload = self._events_wanted and now >= self._upload_at
                    if self._waiters or self._news or ((due or upload) and now >= self._retry_at):
                        break
                    if due:
                        until = self._retry_at
                    elif self._events_wanted:
                        until = max(self._retry_at, self._upload_at)
                    else:
                        until = self._next_heartbeat
                    self._cond.wait(max(until - now, 0.05))  # the next real deadline
                if self._stopping:
                    self._release_waiters()
                    return
                waiters, self._waiters = self._waiters, []
                news, self._news = self._news, []
            try:
                self._apply_news(news)
                self._cycle(waiters, due)
            except Exception as exc:  # never let the thread die: keep trying later
                if self._stopping:
                    return
                log.exception("comms: unexpected error")
                self._fail(f"internal error: {exc}", None)
                self._answer(waiters, self._result(False, str(exc), ExitCode.ERROR))

    def _release_waiters(self) -> None:
        result = self._result(False, "the agent is stopping", ExitCode.ERROR)
        self._answer(self._waiters, result)
        self._waiters = []

    def _answer(self, waiters: list[_Waiter], result: Result) -> None:
        for waiter in waiters:
            waiter.result = result
            waiter.done.set()

    def _cycle(self, waiters: list[_Waiter], due: bool) -> None:
        checked_in = False
        rotations = [w for w in waiters if w.result.get("rotate")]
        if rotations:
            self._answer(rotations, self._rotate())
            checked_in = True
        waiters = [w for w in waiters if not w.result.get("rotate")]
        if waiters:
            self._answer(waiters, self._checkin())
            checked_in = True
        now = time.monotonic()
        if self._events_wanted and now >= self._retry_at and now >= self._upload_at:
            self._upload()
        if due and not checked_in and time.monotonic() >= self._retry_at:
            self._checkin()

    def _result(self, ok: bool, error: str | None, code: ExitCode) -> Result:
        return {
            "ok": ok,
            "time": _now(),
            "server": self.client.server,
            "error": error,
            "exit_code": int(code),
        }

    def _checkin(self) -> Result:
        try:
            reply = self.client.checkin(self.build_request())
            self.on_reply(reply)
            self._merge_servers(reply.get("servers") or [])
        except TrapsError as exc:
            result = self._result(False, exc.message, exc.exit_code)
            self._fail(exc.message, exc)
            with self._cond:
                self._checkin_wanted = True
        else:
            result = self._result(True, None, ExitCode.OK)
            result["policy_version"] = reply["policy"].get("version")
            self.policy_version = result["policy_version"]
            self.failures, self._retry_at = 0, 0.0
            self.last_success = result["time"]
            with self._cond:
                self._checkin_wanted = False
                self._next_heartbeat = time.monotonic() + self._jittered(self.heartbeat_s)
        self.last_checkin = result
        self.on_attempt()
        return result

    def _merge_servers(self, advertised: list[str]) -> None:
        pinned = bool(self.identity.ca_file or self.identity.pin_sha256)
        merged = merge_servers(self.identity.servers, advertised_servers(pinned, advertised))
        if merged != self.identity.servers:
            log.info("server list is now %s", ", ".join(merged))
            self.identity.servers = merged
            save_identity(self.settings.state_dir, self.identity)
            old, self.client = self.client, self._client()
            old.close()

    def _fail(self, message: str, exc: TrapsError | None) -> None:
        self.failures += 1
        if isinstance(exc, RateLimited):
            # The server's Retry-After is a floor; the jitter on top keeps a refused fleet
            # from coming back in step.
            delay = exc.retry_after * (1 + random.random() / 2)
        else:
            ceiling = min(
                self.settings.backoff_max_s, self.settings.backoff_min_s * 2**self.failures
            )
            delay = ceiling * (0.5 + random.random() / 2)  # jitter, not crypto
        self._retry_at = time.monotonic() + delay
        log.warning("ESM: %s (retry in %.1f s)", message, delay)

    def _upload(self) -> None:
        for _ in range(MAX_ROUNDS):
            batch = self.outbox.take(self._batch)
            if not batch:
                with self._cond:
                    self._events_wanted = self.outbox.depth > 0
                return
            try:
                ack = self.client.upload_events(batch)
            except ApiError as exc:
                if exc.status in POISON_STATUSES and not isinstance(exc, AuthError):
                    self._isolate_poison(batch, exc)
                    continue
                self.last_upload_error = exc.message
                self._fail(f"event upload: {exc.message}", exc)
                return
            except TrapsError as exc:
                self.last_upload_error = exc.message
                self._fail(f"event upload: {exc.message}", exc)
                return
            if self.outbox.ack(str(i) for i in ack.get("acked", [])) == 0:
                self._fail("event upload: the server acknowledged none of the batch", None)
                return
            self.last_upload_error = None
            self._batch = self.settings.batch_size
            if self.settings.replay_events_per_s and self.outbox.depth:
                # A backlog: the next batch when this one's share of the rate has passed.
                self._upload_at = time.monotonic() + len(batch) / self.settings.replay_events_per_s
                return
        # more left: the next cycle continues right away (a due check-in goes first)

    def _isolate_poison(self, batch: list[Any], exc: ApiError) -> None:
        """Halve the batch until the event the server refuses is alone, then count it dropped."""
        if len(batch) > 1:
            self._batch = max(1, len(batch) // 2)
            return
        event_id = str(batch[0].get("id"))
        log.error("ESM refuses event %s (%s): counted as dropped", event_id, exc.message)
        self.outbox.ack([event_id])
        self.outbox.count_dropped(1)

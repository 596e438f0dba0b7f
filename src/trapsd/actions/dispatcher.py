"""The action worker: one thread that runs stored actions in order and reports each result.

``receive`` (called by the comms thread with a check-in reply) only stores and wakes; the
worker runs each action, stores its result, then reports it with its own client. A result
the server cannot take now stays stored and is retried (backoff); a refusal (404, 409, 422)
is final. Uninstall is done after its result is reported.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import threading
from typing import Any

from trapsapi.agent_client import AgentClient
from trapsapi.errors import ApiError, TrapsError
from trapsapi.wire_actions import ActionOrder, ActionResult
from trapsd.actions import isolation
from trapsd.actions.executors import (
    EXECUTORS,
    ISOLATION_FILE,
    ActionFailed,
    Context,
    Host,
    confirm,
    is_isolated,
)
from trapsd.actions.logs import LogRing
from trapsd.actions.store import ActionStore, StoredAction
from trapsd.files import read_json

log = logging.getLogger(__name__)
FINAL_REFUSALS = (400, 404, 409, 413, 422)
INTERRUPTED = "interrupted: the agent stopped or crashed while the action ran"


def _expired(action: StoredAction) -> bool:
    try:
        expires = dt.datetime.fromisoformat(action.expires_at)
    except ValueError:
        return False
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=dt.UTC)
    return expires <= dt.datetime.now(dt.UTC)


class Dispatcher:
    def __init__(self, host: Host, identity: Any) -> None:
        self.host = host
        self.identity = identity
        self.store = ActionStore(host.state_dir)
        self.ring = LogRing()
        self._wake = threading.Condition()
        self._wanted = True  # look at the store once at start (interrupted, unreported)
        self._stopping = False
        self._retry_s = host.settings.backoff_min_s
        self._thread = threading.Thread(target=self._run, name="actions", daemon=True)

    def start(self) -> None:
        logging.getLogger().addHandler(self.ring)
        for action in self.store.unfinished():
            if action.state == "running":
                log.error("action %s (%s): %s", action.id, action.type, INTERRUPTED)
                self.store.finish(action.id, "failed", {"interrupted": True}, INTERRUPTED)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join(timeout)
        logging.getLogger().removeHandler(self.ring)
        if not self._thread.is_alive():
            self.store.close()

    def receive(self, orders: list[ActionOrder]) -> None:
        """Store what a check-in delivered and wake the worker (never runs anything here)."""
        if not orders:
            return
        added = self.store.add(orders)
        log.info("received %d action(s), %d new", len(orders), added)
        with self._wake:
            self._wanted = True
            self._wake.notify_all()

    # --- the worker thread -------------------------------------------------------------------
    def _run(self) -> None:
        self._resume_isolation()
        while True:
            with self._wake:
                while not self._wanted and not self._stopping:
                    # Unreported results: retry after the back-off; else sleep until told.
                    retry = self._retry_s if self._pending_reports() else None
                    if not self._wake.wait(retry) and retry is not None:
                        break
                if self._stopping:
                    return
                self._wanted = False
            try:
                self._work()
            except Exception:  # never let the worker die
                log.exception("actions: unexpected error")

    def _pending_reports(self) -> bool:
        return any(a.state == "done" for a in self.store.unfinished())

    def _work(self) -> None:
        """Run every new action in order; report each result (after a failed report, the
        rest wait for the retry, but new actions still run)."""
        unreported = False
        for action in self.store.unfinished():
            if self._stopping:
                return
            if action.state == "new":
                self._execute(action)
            if unreported or not self._report(action.id):
                unreported = True
                continue
            if action.type == "uninstall" and (action.outcome or "succeeded") == "succeeded":
                self.host.uninstall()  # only once its result is at the server
                return
        if unreported:
            self._retry_s = min(self._retry_s * 2, self.host.settings.backoff_max_s)
        else:
            self._retry_s = self.host.settings.backoff_min_s

    def _execute(self, action: StoredAction) -> None:
        self.store.mark_running(action.id)
        result: dict[str, Any]
        if _expired(action):
            outcome, result, detail = "failed", {}, "expired before the agent could run it"
        else:
            log.info("action %s: %s %s", action.id, action.type, action.params)
            context = Context(self.host, self.store, self.ring, action.id)
            try:
                outcome, result, detail = EXECUTORS[action.type](context, action.params)
            except KeyError:
                outcome, result, detail = "failed", {}, f"unknown action type {action.type!r}"
            except (ActionFailed, TrapsError, OSError) as exc:
                outcome, result, detail = "failed", {}, str(exc) or type(exc).__name__
        log.info("action %s: %s %s", action.id, outcome, detail)
        self.store.finish(action.id, outcome, result, detail)

    def _report(self, action_id: str) -> bool:
        """Send the stored result; False when the server could not be told (retry later)."""
        action = next((a for a in self.store.unfinished() if a.id == action_id), None)
        if action is None or action.outcome is None:
            return True
        body: ActionResult = {
            "state": action.outcome,
            "result": action.result or {},
            "detail": action.detail,
        }
        client = self.client()
        try:
            client.report_action(action_id, body)
        except ApiError as exc:
            if exc.status not in FINAL_REFUSALS:
                log.warning("action %s: result not reported (%s)", action_id, exc.message)
                return False
            log.error("action %s: the ESM refuses the result (%s)", action_id, exc.message)
        except TrapsError as exc:
            log.warning("action %s: result not reported (%s)", action_id, exc.message)
            return False
        finally:
            client.close()
        self.store.mark_reported(action_id)
        return True

    def client(self) -> AgentClient:
        return AgentClient(
            self.identity.servers,
            self.identity.agent_id,
            self.identity.agent_secret,
            self.host.settings.request_timeout_s,
            self.host.settings.ca_file,
        )

    def _resume_isolation(self) -> None:
        """After a restart (or reboot) an isolation that was active is applied again, with
        the same grace period to confirm that an ESM answers."""
        if not is_isolated(self.host.state_dir):
            return
        state = read_json(self.host.state_dir / ISOLATION_FILE)
        try:
            addresses = [ipaddress.ip_address(a) for a in state.get("addresses", [])]
            isolation.isolate(addresses)
        except (OSError, ValueError) as exc:
            log.error("cannot restore the network isolation: %s", exc)
            return
        if not confirm(self.host, float(state.get("grace_s", 120))):
            log.error("network isolation rolled back: no ESM answered")

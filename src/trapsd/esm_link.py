"""The agent's side of the ESM link (mixed into ``trapsd.daemon.Agent``): what a check-in
sends, what its reply changes, the wake channel's client and verdict queries."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trapsapi.agent_client import AgentClient
from trapsapi.wire import (
    AgentVerdictQuery,
    AgentVerdicts,
    CheckinRequest,
    CheckinResponse,
    ModuleState,
)
from trapsd import __version__, hostinfo, policylog
from trapsd.actions.dispatcher import Dispatcher
from trapsd.checkin import Comms
from trapsd.config import AgentSettings
from trapsd.footprint import FootprintMeter
from trapsd.identity import Identity
from trapsd.outbox import Outbox
from trapsd.policy import Policy, PolicyError, compile_policy
from trapsd.wake import Waker

log = logging.getLogger("trapsd.daemon")
VERDICT_QUERY_TIMEOUT_S = 3.0


class EsmLink:
    settings: AgentSettings
    state_dir: Path
    identity: Identity
    policy: Policy
    outbox: Outbox
    meter: FootprintMeter
    instance_id: str
    stopping: threading.Event
    waker: Waker | None
    actions: Dispatcher | None
    _refused_version: object

    if TYPE_CHECKING:  # provided by the other parts of the Agent

        def module_states(self) -> list[ModuleState]: ...

        def write_status(self, running: bool = True) -> None: ...

        def apply_policy(self, policy: Policy) -> None: ...

    def _waker(self, comms: Comms) -> Waker:
        """The long-poll thread; its client follows the identity's current server list."""

        def client(timeout: float) -> AgentClient:
            identity = self.identity
            return AgentClient(
                identity.servers,
                identity.agent_id,
                identity.agent_secret,
                timeout,
                self.settings.ca_file,
            )

        return Waker(
            self.settings, client, lambda: comms.policy_version, lambda _r: comms.wake(), comms.news
        )

    def _after_checkin(self) -> None:
        self.write_status()
        if self.waker is not None:
            self.waker.kick()

    def _checkin_request(self) -> CheckinRequest:
        return {
            "hostname": hostinfo.hostname(),
            "os": hostinfo.os_name(),
            "os_version": hostinfo.os_version(),
            "agent_version": __version__,
            "ips": hostinfo.ip_addresses(),
            "modules": self.module_states(),
            "footprint": self.meter.measure(),
            "policy_version": self.policy.version,
            "outbox_depth": self.outbox.depth,
            "events_dropped": self.outbox.dropped,
            "instance_id": self.instance_id,
            "stopping": self.stopping.is_set(),
        }

    def _query_verdicts(self, query: AgentVerdictQuery) -> AgentVerdicts:
        """On the analyst thread: its own short-lived client, a short timeout."""
        identity = self.identity
        client = AgentClient(
            identity.servers,
            identity.agent_id,
            identity.agent_secret,
            min(self.settings.request_timeout_s, VERDICT_QUERY_TIMEOUT_S),
            self.settings.ca_file,
        )
        try:
            return client.verdicts(query)
        finally:
            client.close()

    def _on_reply(self, reply: CheckinResponse) -> None:
        self._apply(reply["policy"], reply.get("actions"))

    def _on_news(self, reply: dict[str, Any]) -> None:
        """What the wake channel brought: maybe a policy, maybe actions."""
        self._apply(reply.get("policy"), reply.get("actions"))

    def _apply(self, wire: Any, actions: Any) -> None:
        """Compile first; switch only to a valid policy (a bad one leaves the old in force)."""
        if wire is not None:
            try:
                policy = compile_policy(wire)
            except PolicyError as exc:
                version = wire.get("version") if isinstance(wire, dict) else None
                if version != self._refused_version:  # once per version, not every check-in
                    self._refused_version = version
                    policylog.record(
                        self.state_dir,
                        {
                            "result": "refused",
                            "from_version": self.policy.version,
                            "to_version": version,
                            "error": exc.message,
                        },
                    )
                raise
            current = self.policy
            if policy.wire != current.wire or policy.version != current.version:
                self.apply_policy(policy)
        if actions and self.actions is not None:
            self.actions.receive(actions)

"""The client trapsd uses to talk to the ESM communication servers (standard library only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

from trapsapi import routes
from trapsapi.http import ServerPool
from trapsapi.wire import (
    AgentVerdictQuery,
    AgentVerdicts,
    CheckinRequest,
    CheckinResponse,
    EnrollRequest,
    EnrollResponse,
    EventAck,
    RotatedSecret,
    SecurityEvent,
)
from trapsapi.wire_actions import (
    ActionResult,
    ActionResultAck,
    ForensicUpload,
    ForensicUploadAck,
    LogUpload,
    LogUploadAck,
)

UploadKind = Literal["logs", "forensics"]


def enroll(
    servers: Sequence[str],
    request: EnrollRequest,
    timeout: float = 10.0,
    ca_file: str | None = None,
    pin_sha256: str | None = None,
) -> EnrollResponse:
    """Trade an enrollment token for an agent identity, trying each server in turn."""
    pool = ServerPool(servers, timeout, ca_file, pin_sha256)
    try:
        response: EnrollResponse = pool.request("POST", routes.AGENT_ENROLL, dict(request))
    finally:
        pool.close()
    return response


class AgentClient:
    """Authenticated agent calls, with failover along the server list."""

    def __init__(
        self,
        servers: Sequence[str],
        agent_id: str,
        secret: str,
        timeout: float = 10.0,
        ca_file: str | None = None,
        pin_sha256: str | None = None,
    ) -> None:
        self.pool = ServerPool(servers, timeout, ca_file, pin_sha256)
        self.agent_id = agent_id
        self._headers = {"Authorization": f"Bearer {agent_id}.{secret}"}

    @property
    def server(self) -> str:
        return self.pool.current_url

    def checkin(self, request: CheckinRequest) -> CheckinResponse:
        response: CheckinResponse = self.pool.request(
            "POST", routes.AGENT_CHECKIN, dict(request), self._headers
        )
        return response

    def upload_events(self, events: Sequence[SecurityEvent]) -> EventAck:
        """Send a batch; the reply lists the IDs the server has committed (new or duplicate)."""
        ack: EventAck = self.pool.request(
            "POST", routes.AGENT_EVENTS, {"events": list(events)}, self._headers
        )
        return ack

    def rotate(self) -> RotatedSecret:
        """A new secret; keep using the old one until the new one is saved, then switch."""
        reply: RotatedSecret = self.pool.request("POST", routes.AGENT_ROTATE, {}, self._headers)
        return reply

    def verdicts(self, query: AgentVerdictQuery) -> AgentVerdicts:
        """Verdicts of hashes the policy does not list; reports the agent's own analysis."""
        reply: AgentVerdicts = self.pool.request(
            "POST", routes.AGENT_VERDICTS, dict(query), self._headers
        )
        return reply

    def report_action(self, action_id: str, result: ActionResult) -> ActionResultAck:
        """Report the result of one of this agent's actions (idempotent on the server)."""
        ack: ActionResultAck = self.pool.request(
            "POST", f"{routes.AGENT_ACTIONS}/{action_id}/result", dict(result), self._headers
        )
        return ack

    def upload_action_file(
        self, action_id: str, kind: UploadKind, upload: LogUpload | ForensicUpload
    ) -> dict[str, Any]:
        """Upload a file an action asked for: ``logs`` (retrieve_logs, once per action) or
        ``forensics`` (retrieve_forensics, one bundle per call); idempotent on the server."""
        ack: dict[str, Any] = self.pool.request(
            "POST", f"{routes.AGENT_ACTIONS}/{action_id}/{kind}", dict(upload), self._headers
        )
        return ack

    def upload_action_logs(self, action_id: str, upload: LogUpload) -> LogUploadAck:
        return cast(LogUploadAck, self.upload_action_file(action_id, "logs", upload))

    def upload_forensics(self, action_id: str, upload: ForensicUpload) -> ForensicUploadAck:
        return cast(ForensicUploadAck, self.upload_action_file(action_id, "forensics", upload))

    def wait(
        self, policy_version: int, timeout_s: int, deliver: bool = False
    ) -> dict[str, object] | None:
        """Long-poll the wake channel: why to check in now, or None when it timed out (204).

        With ``deliver`` the reply carries the news itself (``policy`` when the agent is
        behind, ``actions``). Use a client of its own, whose socket timeout exceeds
        ``timeout_s``."""
        params: dict[str, object] = {"policy_version": policy_version, "timeout": timeout_s}
        if deliver:
            params["deliver"] = "true"
        reply: dict[str, object] | None = self.pool.request(
            "GET", routes.AGENT_WAIT, None, self._headers, params
        )
        return reply

    def abort(self) -> None:
        """End a held long-poll from another thread (see ``Connection.abort``)."""
        self.pool.abort()

    def close(self) -> None:
        self.pool.close()

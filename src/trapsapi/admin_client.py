"""The admin client trapsctl (scripted verbs and dashboard) uses; standard library only.

Replies are the decoded JSON of the models in :mod:`trapsapi.models` (the OpenAPI contract),
returned as plain dicts so that the console never pays for importing pydantic.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from trapsapi import routes
from trapsapi.http import Connection

Obj = dict[str, Any]


class AdminClient:
    def __init__(
        self,
        server: str,
        token: str | None = None,
        timeout: float = 30.0,
        ca_file: str | None = None,
    ) -> None:
        self.connection = Connection(server, timeout, ca_file)
        self.token = token

    @property
    def server(self) -> str:
        return self.connection.url

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.connection.request(method, path, body, headers, params)

    # auth
    def login(self, username: str, password: str) -> Obj:
        reply: Obj = self._call("POST", routes.LOGIN, {"username": username, "password": password})
        self.token = reply["token"]
        return reply

    def logout(self) -> None:
        self._call("POST", routes.LOGOUT)

    def whoami(self) -> Obj:
        reply: Obj = self._call("GET", routes.WHOAMI)
        return reply

    # agents
    def list_agents(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.AGENTS, params=filters)
        return reply

    def list_servers(self) -> Obj:
        reply: Obj = self._call("GET", routes.SERVERS)
        return reply

    def get_agent(self, agent_id: str) -> Obj:
        reply: Obj = self._call("GET", f"{routes.AGENTS}/{quote(agent_id, safe='')}")
        return reply

    # events
    def list_events(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.EVENTS, params=filters)
        return reply

    # hash verdicts
    def list_hashes(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.HASHES, params=filters)
        return reply

    def get_hash(self, sha256: str) -> Obj:
        reply: Obj = self._call("GET", f"{routes.HASHES}/{quote(sha256, safe='')}")
        return reply

    def set_verdict(self, sha256: str, verdict: str, comment: str = "") -> Obj:
        body = {"verdict": verdict, "comment": comment}
        reply: Obj = self._call("PUT", f"{routes.HASHES}/{quote(sha256, safe='')}", body)
        return reply

    def unset_verdict(self, sha256: str) -> None:
        self._call("DELETE", f"{routes.HASHES}/{quote(sha256, safe='')}")

    # enrollment tokens
    def create_token(self, label: str = "", expires_in_s: int = 86400, max_uses: int = 1) -> Obj:
        body = {"label": label, "expires_in_s": expires_in_s, "max_uses": max_uses}
        reply: Obj = self._call("POST", routes.ENROLLMENT_TOKENS, body)
        return reply

    def list_tokens(self) -> Obj:
        reply: Obj = self._call("GET", routes.ENROLLMENT_TOKENS)
        return reply

    def revoke_token(self, token_id: str) -> None:
        self._call("DELETE", f"{routes.ENROLLMENT_TOKENS}/{quote(token_id, safe='')}")

    # users (superuser), own password
    def list_users(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.USERS, params=filters)
        return reply

    def create_user(self, username: str, password: str, role: str = "viewer") -> Obj:
        body = {"username": username, "password": password, "role": role}
        reply: Obj = self._call("POST", routes.USERS, body)
        return reply

    def set_user_role(self, username: str, role: str) -> Obj:
        path = f"{routes.USERS}/{quote(username, safe='')}"
        reply: Obj = self._call("PATCH", path, {"role": role})
        return reply

    def delete_user(self, username: str) -> None:
        self._call("DELETE", f"{routes.USERS}/{quote(username, safe='')}")

    def change_password(self, current_password: str, new_password: str) -> None:
        body = {"current_password": current_password, "new_password": new_password}
        self._call("PUT", routes.PASSWORD, body)

    # API tokens for scripts (superuser)
    def create_api_token(self, name: str, username: str, expires_in_s: int | None = None) -> Obj:
        body = {"name": name, "username": username, "expires_in_s": expires_in_s}
        reply: Obj = self._call("POST", routes.API_TOKENS, body)
        return reply

    def list_api_tokens(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.API_TOKENS, params=filters)
        return reply

    def revoke_api_token(self, token_id: str) -> None:
        self._call("DELETE", f"{routes.API_TOKENS}/{quote(token_id, safe='')}")

    # audit log (read-only)
    def list_audit(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.AUDIT, params=filters)
        return reply

    # event triage and dashboard counts
    def triage_event(
        self,
        event_id: str,
        status: str | None = None,
        assignee: str | None = None,
        comment: str | None = None,
        agent_id: str | None = None,
    ) -> Obj:
        body = {
            key: value
            for key, value in (("status", status), ("assignee", assignee), ("comment", comment))
            if value is not None
        }
        params = {"agent_id": agent_id} if agent_id else None
        path = f"{routes.EVENTS}/{quote(event_id, safe='')}"
        reply: Obj = self._call("PATCH", path, body, params)
        return reply

    def event_counts(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.EVENT_COUNTS, params=filters)
        return reply

    def close(self) -> None:
        self.connection.close()

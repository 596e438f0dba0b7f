"""The admin client trapsctl (scripted verbs and dashboard) uses; standard library only.

Replies are the decoded JSON of the models in :mod:`trapsapi.models` (the OpenAPI contract),
returned as plain dicts so that the console never pays for importing pydantic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

from trapsapi import routes
from trapsapi.errors import TrapsError
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
        return self.connection.request(method, path, body, self._headers(), params)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

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

    # paging
    @staticmethod
    def pages(list_call: Callable[..., Obj], **filters: Any) -> Iterator[Obj]:
        """Every page of a list (``client.pages(client.list_events, severity="high")``),
        following ``next_cursor``: one index range scan per page on the server however deep,
        and no row twice while rows are added meanwhile."""
        cursor = None
        while True:
            page = list_call(**filters, cursor=cursor)
            yield page
            cursor = page.get("next_cursor")
            if not cursor:
                return

    @classmethod
    def rows(cls, list_call: Callable[..., Obj], **filters: Any) -> Iterator[Obj]:
        """Every row of a list, page by page (see :meth:`pages`)."""
        for page in cls.pages(list_call, **filters):
            yield from page.get("data", [])

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

    def revoke_agent(self, agent_id: str) -> None:
        self._call("POST", f"{routes.AGENTS}/{quote(agent_id, safe='')}/revoke")

    def delete_agent(self, agent_id: str) -> Obj:
        reply: Obj = self._call("DELETE", f"{routes.AGENTS}/{quote(agent_id, safe='')}")
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

    def hash_report(self, sha256: str) -> Obj:
        reply: Obj = self._call("GET", f"{routes.HASHES}/{quote(sha256, safe='')}/report")
        return reply

    def import_hashes(
        self,
        feed: str,
        entries: list[Obj],
        verdict: str = "malware",
        replace: bool = False,
        since: str | None = None,
    ) -> Obj:
        """One chunk (≤ 20,000 entries) of a feed import; see ``trapsapi.models_hashes``."""
        body = {"feed": feed, "verdict": verdict, "entries": entries, "replace": replace}
        if since is not None:
            body["since"] = since
        reply: Obj = self._call("POST", routes.HASH_FEED_IMPORT, body)
        return reply

    def list_feeds(self) -> list[Obj]:
        reply: list[Obj] = self._call("GET", routes.HASH_FEEDS)
        return reply

    def delete_feed(self, feed: str) -> None:
        self._call("DELETE", f"{routes.HASH_FEEDS}/{quote(feed, safe='')}")

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

    # policies
    def list_policies(self) -> Obj:
        reply: Obj = self._call("GET", routes.POLICIES)
        return reply

    def get_policy(self, name: str) -> Obj:
        reply: Obj = self._call("GET", f"{routes.POLICIES}/{quote(name, safe='')}")
        return reply

    def apply_policies(self, policy_file: Obj, dry_run: bool = False) -> Obj:
        """Create or update by name, all or nothing; ``dry_run`` only says what would change."""
        params = {"dry_run": "true"} if dry_run else None
        reply: Obj = self._call("POST", routes.POLICIES, policy_file, params=params)
        return reply

    def diff_policies(self, policy_file: Obj) -> Obj:
        """What applying ``policy_file`` would change (needs only read permission)."""
        reply: Obj = self._call("POST", routes.POLICY_DIFF, policy_file)
        return reply

    def delete_policy(self, name: str) -> None:
        self._call("DELETE", f"{routes.POLICIES}/{quote(name, safe='')}")

    def policy_history(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.POLICY_HISTORY, params=filters)
        return reply

    def set_agent_labels(self, agent_id: str, labels: list[str]) -> Obj:
        path = f"{routes.AGENTS}/{quote(agent_id, safe='')}/labels"
        reply: Obj = self._call("PUT", path, {"labels": labels})
        return reply

    def set_agent_group(self, agent_id: str, group: str | None) -> Obj:
        path = f"{routes.AGENTS}/{quote(agent_id, safe='')}/group"
        reply: Obj = self._call("PUT", path, {"group": group})
        return reply

    def explain_agent_policy(self, agent_id: str) -> Obj:
        path = f"{routes.AGENTS}/{quote(agent_id, safe='')}/policy/explain"
        reply: Obj = self._call("GET", path)
        return reply

    # actions (the action centre)
    def create_action(
        self,
        kind: str,
        target: Obj,
        params: Obj | None = None,
        expires_in_s: int = 86400,
        comment: str = "",
    ) -> Obj:
        body = {
            "type": kind,
            "target": target,
            "params": params or {},
            "expires_in_s": expires_in_s,
            "comment": comment,
        }
        reply: Obj = self._call("POST", routes.ACTIONS, body)
        return reply

    def list_actions(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.ACTIONS, params=filters)
        return reply

    def get_action(self, action_id: str) -> Obj:
        reply: Obj = self._call("GET", f"{routes.ACTIONS}/{quote(action_id, safe='')}")
        return reply

    def cancel_action(self, action_id: str) -> Obj:
        reply: Obj = self._call("POST", f"{routes.ACTIONS}/{quote(action_id, safe='')}/cancel")
        return reply

    def action_logs(self, action_id: str, agent_id: str) -> Obj:
        path = f"{routes.ACTIONS}/{quote(action_id, safe='')}/agents/{quote(agent_id, safe='')}"
        reply: Obj = self._call("GET", f"{path}/logs")
        return reply

    def list_quarantine(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.QUARANTINE, params=filters)
        return reply

    # forensic bundles
    def list_forensics(self, **filters: Any) -> Obj:
        reply: Obj = self._call("GET", routes.FORENSICS, params=filters)
        return reply

    def get_forensics(self, bundle_id: str) -> Obj:
        reply: Obj = self._call("GET", f"{routes.FORENSICS}/{quote(bundle_id, safe='')}")
        return reply

    def delete_forensics(self, bundle_id: str) -> Obj:
        reply: Obj = self._call("DELETE", f"{routes.FORENSICS}/{quote(bundle_id, safe='')}")
        return reply

    def download_forensics(
        self, bundle_id: str, write: Callable[[bytes], object]
    ) -> dict[str, Any]:
        """Stream the bundle (gzip JSON) to ``write``; its size and SHA-256, checked against
        the server's (a mismatch raises :class:`TrapsError`: discard what was written)."""
        digest = hashlib.sha256()
        size = 0

        def sink(chunk: bytes) -> None:
            nonlocal size
            digest.update(chunk)
            size += len(chunk)
            write(chunk)

        path = f"{routes.FORENSICS}/{quote(bundle_id, safe='')}/content"
        headers = self.connection.download(path, sink, self._headers())
        expected = headers.get("x-content-sha256")
        if expected and digest.hexdigest() != expected:
            raise TrapsError(f"forensic bundle {bundle_id}: download incomplete or corrupt")
        return {"size": size, "sha256": digest.hexdigest()}

    def close(self) -> None:
        self.connection.close()

    # one event, server version (console additions)
    def get_event(self, event_id: str, agent_id: str | None = None) -> Obj:
        params = {"agent_id": agent_id} if agent_id else None
        path = f"{routes.EVENTS}/{quote(event_id, safe='')}"
        reply: Obj = self._call("GET", path, params=params)
        return reply

    def server_version(self) -> Obj:
        reply: Obj = self._call("GET", routes.SERVER_VERSION)
        return reply

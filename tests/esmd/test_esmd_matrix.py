"""R15 and R19, generated from the app's route table.

* Every route declares one permission; the declared table (``esmd.authz``) equals the matrix
  written out here; and every route called by {no credential, an agent, viewer, analyst,
  security_admin, superuser} answers as that matrix says.
* Every state-changing route (except the agent hot paths) called once with a valid request
  writes exactly one audit record, with actor, time, action, target and source IP.

A new route without a declared permission, or without an example in ``AUDITED`` below, fails
these tests.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from esmd_harness import ADMIN_USER, PASSWORD, Esm, checkin_body, new_event
from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from esmd.api.deps import declared_permission
from esmd.authz import ROLE_PERMISSIONS, Permission
from trapsapi import routes
from trapsapi.enums import Role

DOCUMENTATION = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
"""Routes FastAPI adds itself (not APIRoutes): public by design."""
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
ROLES = ("viewer", "analyst", "security_admin", "superuser")
IDENTITIES = ("none", "agent", *ROLES)

# The matrix, written out independently of esmd.authz: who may use each permission.
EVERY_ADMIN = set(ROLES)
EXPECTED: dict[Permission, set[str]] = {
    Permission.PUBLIC: set(IDENTITIES),
    Permission.AGENT: {"agent"},
    Permission.SESSION: EVERY_ADMIN,
    Permission.READ: EVERY_ADMIN,
    Permission.EVENTS_TRIAGE: {"analyst", "security_admin", "superuser"},
    Permission.HASHES_WRITE: {"security_admin", "superuser"},
    Permission.ENROLLMENT_WRITE: {"security_admin", "superuser"},
    Permission.POLICIES_WRITE: {"security_admin", "superuser"},
    Permission.ACTIONS_WRITE: {"security_admin", "superuser"},
    Permission.AGENTS_WRITE: {"security_admin", "superuser"},
    Permission.AUDIT_READ: {"security_admin", "superuser"},
    Permission.FORENSICS_READ: {"analyst", "security_admin", "superuser"},
    Permission.FORENSICS_DELETE: {"security_admin", "superuser"},
    Permission.USERS_ADMIN: {"superuser"},
    Permission.API_TOKENS_ADMIN: {"superuser"},
}

_PATH_PARAMETER = re.compile(r"\{(\w+)\}")
PROBE_VALUES = {
    "agent_id": str(uuid.uuid4()),
    "event_id": str(uuid.uuid4()),
    "sha256": "f" * 64,
    "token_id": "no-such-token",
    "username": "no-such-user",
    "feed": "no-such-feed",
    "policy_name": "no-such-policy",
    "action_id": "0" * 32,
    "bundle_id": "0" * 32,
}


def route_permission(route: RouteContext) -> Permission | None:
    """The permission a route declares through its dependencies (None: none declared)."""
    if not isinstance(route.original_route, APIRoute):
        return Permission.PUBLIC if route.path in DOCUMENTATION else None
    found: set[Permission] = set()
    stack = [getattr(route, "dependant", None) or route.original_route.dependant]
    while stack:
        dependant = stack.pop()
        permission = declared_permission(dependant.call)
        if permission is not None:
            found.add(permission)
        stack.extend(dependant.dependencies)
    return found.pop() if len(found) == 1 else None


def endpoints(app: FastAPI) -> list[tuple[str, str, RouteContext]]:
    """(method, path template, route) of every route the app serves, included ones too."""
    result = []
    for route in iter_route_contexts(app.routes):
        methods = route.methods or {"GET"}
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            result.append((method, route.path or "?", route))
    return result


def _app(esm: Esm) -> FastAPI:
    from esmd.app import create_app

    return create_app(esm.settings)


def undeclared(app: FastAPI) -> list[str]:
    return [f"{m} {p}" for m, p, route in endpoints(app) if route_permission(route) is None]


def test_every_route_declares_one_permission_and_the_table_is_the_matrix() -> None:
    from esmd.app import create_app
    from esmd.config import Settings

    app = create_app(Settings(database_url="sqlite://"))
    assert undeclared(app) == []
    for role in Role:
        granted = {p for p, who in EXPECTED.items() if role.value in who} - {
            Permission.PUBLIC,
            Permission.AGENT,
        }
        assert ROLE_PERMISSIONS[role] == granted, role
    assert set(EXPECTED) == set(Permission)

    # The check does catch a route that forgets to declare one.
    @app.get("/api/v1/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    assert undeclared(app) == ["GET /api/v1/forgotten"]


def _identities(esm: Esm) -> dict[str, dict[str, str]]:
    agent = esm.enroll("matrix-agent")
    headers: dict[str, dict[str, str]] = {"none": {}, "agent": esm.agent_header(agent)}
    for role in ROLES:
        client = esm.admin if role == "superuser" else esm.user(role)
        headers[role] = {"Authorization": f"Bearer {client.token}"}
    return headers


def test_authorization_matrix_over_every_route(esm: Esm) -> None:
    headers = _identities(esm)
    app = _app(esm)
    calls = sorted(endpoints(app), key=lambda e: e[1] == routes.LOGOUT)  # logout last
    assert len(calls) > 30
    before = esm.snapshot()
    mismatches = []
    for method, template, route in calls:
        permission = route_permission(route)
        assert permission is not None, f"{method} {template} declares no permission"
        path = _PATH_PARAMETER.sub(lambda m: PROBE_VALUES[m.group(1)], template)
        # A body no request model accepts (extra="forbid"): an allowed caller gets a 422,
        # a mass-assignment probe changes nothing, and nothing is ever created.
        body = {"role": "superuser", "agent_id": "x"} if method in WRITE_METHODS else None
        for identity in IDENTITIES:
            reply = esm.raw(method, path, body, headers[identity])
            allowed = identity in EXPECTED[permission]
            if allowed:
                ok = reply.status not in (401, 403) and reply.status < 500
            elif identity in ("none", "agent") or permission is Permission.AGENT:
                ok = reply.status == 401
            else:
                ok = reply.status == 403
            if not ok:
                mismatches.append((method, template, identity, reply.status, reply.raw[:120]))
    for mismatch in mismatches:
        print(mismatch)
    assert mismatches == []
    after = esm.snapshot()
    # Only the audit log grew: logins (setup) and the logouts of the last round.
    assert {k: v for k, v in after.items() if k != "audit_log"} == {
        k: v for k, v in before.items() if k != "audit_log"
    }


# --- R19: audit completeness ------------------------------------------------------------


def _event(esm: Esm) -> str:
    agent = esm.enroll("audited")
    event = new_event()
    agent.upload_events([event])
    return str(event["id"])


Example = Callable[[Esm], tuple[str, str, str, Any, dict[str, str] | None]]
"""Prepares what the call needs, then returns (path, expected action, target, body, headers);
headers None means the superuser's."""


def _login(esm: Esm) -> Any:
    body = {"username": ADMIN_USER, "password": "correct horse battery staple"}
    return routes.LOGIN, "auth.login", ADMIN_USER, body, {}


def _logout(esm: Esm) -> Any:
    client = esm.user("viewer", "leaving")
    return (
        routes.LOGOUT,
        "auth.logout",
        "leaving",
        None,
        {"Authorization": f"Bearer {client.token}"},
    )


def _password(esm: Esm) -> Any:
    client = esm.user("analyst", "changer")
    body = {"current_password": PASSWORD, "new_password": "a brand new password"}
    headers = {"Authorization": f"Bearer {client.token}"}
    return routes.PASSWORD, "user.change_password", "changer", body, headers


def _enroll(esm: Esm) -> Any:
    body = {
        "token": esm.token(),
        "hostname": "new-host",
        "os": "linux",
        "os_version": "6.1",
        "agent_version": "0.1.0",
    }
    return routes.AGENT_ENROLL, "agent.enroll", "*", body, {}


def _revoke_enrollment_token(esm: Esm) -> Any:
    token_id = esm.admin.create_token()["id"]
    return f"{routes.ENROLLMENT_TOKENS}/{token_id}", "token.revoke", token_id, None, None


def _unset_verdict(esm: Esm) -> Any:
    esm.admin.set_verdict("2" * 64, "benign")
    return f"{routes.HASHES}/{'2' * 64}", "hash.unset", "2" * 64, None, None


def _triage(esm: Esm) -> Any:
    event_id = _event(esm)
    body = {"status": "in_progress", "assignee": ADMIN_USER, "comment": "looking"}
    return f"{routes.EVENTS}/{event_id}", "event.triage", event_id, body, None


def _set_role(esm: Esm) -> Any:
    esm.admin.create_user("promoted", PASSWORD, "viewer")
    return f"{routes.USERS}/promoted", "user.set_role", "promoted", {"role": "analyst"}, None


def _delete_user(esm: Esm) -> Any:
    esm.admin.create_user("doomed", PASSWORD, "viewer")
    return f"{routes.USERS}/doomed", "user.delete", "doomed", None, None


def _revoke_api_token(esm: Esm) -> Any:
    token_id = esm.admin.create_api_token("old script", ADMIN_USER)["id"]
    return f"{routes.API_TOKENS}/{token_id}", "api_token.revoke", token_id, None, None


def _import_feed(esm: Esm) -> Any:
    body = {"feed": "intel", "entries": [{"sha256": "3" * 64}]}
    return routes.HASH_FEED_IMPORT, "hash.import", "feed:intel", body, None


def _delete_feed(esm: Esm) -> Any:
    esm.admin.import_hashes("stale", [{"sha256": "4" * 64}])
    return f"{routes.HASH_FEEDS}/stale", "hash.feed.delete", "feed:stale", None, None


def _revoke_agent(esm: Esm) -> Any:
    agent = esm.enroll("revoked")
    return f"{routes.AGENTS}/{agent.agent_id}/revoke", "agent.revoke", agent.agent_id, None, None


def _delete_agent(esm: Esm) -> Any:
    agent = esm.enroll("forgotten")
    return f"{routes.AGENTS}/{agent.agent_id}", "agent.delete", agent.agent_id, None, None


def _rotate(esm: Esm) -> Any:
    agent = esm.enroll("rotating")
    return routes.AGENT_ROTATE, "agent.rotate", agent.agent_id, {}, esm.agent_header(agent)


def _delivered_action(esm: Esm, kind: str) -> tuple[Any, str]:
    agent = esm.enroll("acting")
    action = esm.admin.create_action(kind, {"agent_id": agent.agent_id})
    agent.checkin(checkin_body(hostname="acting"))  # type: ignore[arg-type]
    return agent, str(action["id"])


def _create_action(esm: Esm) -> Any:
    agent = esm.enroll("to-scan")
    body = {"type": "scan", "target": {"agent_id": agent.agent_id}, "params": {"paths": ["/usr"]}}
    return routes.ACTIONS, "action.create", "*", body, None


def _cancel_action(esm: Esm) -> Any:
    agent = esm.enroll("idle")
    action_id = esm.admin.create_action("checkin", {"agent_id": agent.agent_id})["id"]
    return f"{routes.ACTIONS}/{action_id}/cancel", "action.cancel", action_id, None, None


def _action_result(esm: Esm) -> Any:
    agent, action_id = _delivered_action(esm, "checkin")
    path = f"{routes.AGENT_ACTIONS}/{action_id}/result"
    body = {"state": "succeeded", "result": {"checked_in": True}}
    return path, "action.result", action_id, body, esm.agent_header(agent)


def _action_logs(esm: Esm) -> Any:
    agent, action_id = _delivered_action(esm, "retrieve_logs")
    content = gzip.compress(b"log line\n")
    body = {
        "content_b64": base64.b64encode(content).decode(),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    path = f"{routes.AGENT_ACTIONS}/{action_id}/logs"
    return path, "action.logs", action_id, body, esm.agent_header(agent)


def forensic_upload(bundle_id: str, content: bytes) -> dict[str, Any]:
    return {
        "bundle_id": bundle_id,
        "event_id": bundle_id,
        "created_at": datetime.now(UTC).isoformat(),
        "content_b64": base64.b64encode(content).decode(),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def _forensics_upload(esm: Esm) -> Any:
    agent, action_id = _delivered_action(esm, "retrieve_forensics")
    body = forensic_upload(str(uuid.uuid4()), gzip.compress(b'{"process": {}}'))
    path = f"{routes.AGENT_ACTIONS}/{action_id}/forensics"
    return path, "forensics.upload", "*", body, esm.agent_header(agent)


def _forensics_delete(esm: Esm) -> Any:
    agent, action_id = _delivered_action(esm, "retrieve_forensics")
    body = forensic_upload(str(uuid.uuid4()), gzip.compress(b"{}"))
    stored = agent.upload_forensics(action_id, body)  # type: ignore[arg-type]
    return f"{routes.FORENSICS}/{stored['id']}", "forensics.delete", stored["id"], None, None


AUDITED: dict[tuple[str, str], Example] = {
    ("POST", f"{routes.AGENTS}/{{agent_id}}/revoke"): _revoke_agent,
    ("DELETE", f"{routes.AGENTS}/{{agent_id}}"): _delete_agent,
    ("POST", routes.AGENT_ROTATE): _rotate,
    ("POST", routes.HASH_FEED_IMPORT): _import_feed,
    ("DELETE", f"{routes.HASH_FEEDS}/{{feed}}"): _delete_feed,
    ("POST", routes.LOGIN): _login,
    ("POST", routes.LOGOUT): _logout,
    ("PUT", routes.PASSWORD): _password,
    ("POST", routes.AGENT_ENROLL): _enroll,
    ("POST", routes.ENROLLMENT_TOKENS): lambda esm: (
        routes.ENROLLMENT_TOKENS,
        "token.create",
        "*",
        {"label": "rack 9"},
        None,
    ),
    ("DELETE", f"{routes.ENROLLMENT_TOKENS}/{{token_id}}"): _revoke_enrollment_token,
    ("PUT", f"{routes.HASHES}/{{sha256}}"): lambda esm: (
        f"{routes.HASHES}/{'1' * 64}",
        "hash.set",
        "1" * 64,
        {"verdict": "malware"},
        None,
    ),
    ("DELETE", f"{routes.HASHES}/{{sha256}}"): _unset_verdict,
    ("PATCH", f"{routes.EVENTS}/{{event_id}}"): _triage,
    ("POST", routes.USERS): lambda esm: (
        routes.USERS,
        "user.create",
        "newbie",
        {"username": "newbie", "password": PASSWORD, "role": "analyst"},
        None,
    ),
    ("PATCH", f"{routes.USERS}/{{username}}"): _set_role,
    ("DELETE", f"{routes.USERS}/{{username}}"): _delete_user,
    ("POST", routes.API_TOKENS): lambda esm: (
        routes.API_TOKENS,
        "api_token.create",
        "*",
        {"name": "ci", "username": ADMIN_USER},
        None,
    ),
    ("DELETE", f"{routes.API_TOKENS}/{{token_id}}"): _revoke_api_token,
    ("POST", routes.ACTIONS): _create_action,
    ("POST", f"{routes.ACTIONS}/{{action_id}}/cancel"): _cancel_action,
    ("POST", f"{routes.AGENT_ACTIONS}/{{action_id}}/result"): _action_result,
    ("POST", f"{routes.AGENT_ACTIONS}/{{action_id}}/logs"): _action_logs,
    ("POST", f"{routes.AGENT_ACTIONS}/{{action_id}}/forensics"): _forensics_upload,
    ("DELETE", f"{routes.FORENSICS}/{{bundle_id}}"): _forensics_delete,
}


def _apply_policy(esm: Esm) -> Any:
    body = {"policies": [{"name": "audited", "targets": {"include": {"labels": ["x"]}}}]}
    return routes.POLICIES, "policy.apply", "audited", body, None


def _delete_policy(esm: Esm) -> Any:
    esm.admin.apply_policies(
        {"policies": [{"name": "doomed", "targets": {"include": {"os": ["linux"]}}}]}
    )
    return f"{routes.POLICIES}/doomed", "policy.delete", "doomed", None, None


def _label_agent(esm: Esm) -> Any:
    agent_id = esm.enroll("labelled").agent_id
    return (
        f"{routes.AGENTS}/{agent_id}/labels",
        "agent.set_labels",
        agent_id,
        {"labels": ["db"]},
        None,
    )


def _group_agent(esm: Esm) -> Any:
    agent_id = esm.enroll("grouped").agent_id
    return f"{routes.AGENTS}/{agent_id}/group", "agent.set_group", agent_id, {"group": "dc1"}, None


AUDITED.update(
    {
        ("POST", routes.POLICIES): _apply_policy,
        ("DELETE", f"{routes.POLICIES}/{{policy_name}}"): _delete_policy,
        ("PUT", f"{routes.AGENTS}/{{agent_id}}/labels"): _label_agent,
        ("PUT", f"{routes.AGENTS}/{{agent_id}}/group"): _group_agent,
    }
)
NOT_AUDITED = {
    ("POST", routes.AGENT_CHECKIN),
    ("POST", routes.AGENT_EVENTS),
    ("POST", routes.AGENT_VERDICTS),
    ("POST", routes.POLICY_DIFF),
}
"""The agent hot paths: their effect is the agent's own status, events and (informational)
analysis reports, not an admin change; and the policy diff, a POST (the body is a policy file)
that changes nothing (tests/esmd/test_esmd_policies.py checks that)."""


def test_every_state_changing_route_writes_exactly_one_audit_record(esm: Esm) -> None:
    writes = {
        (method, path) for method, path, _route in endpoints(_app(esm)) if method in WRITE_METHODS
    }
    assert writes - NOT_AUDITED == set(AUDITED), "give every new write route an example"
    started = datetime.now(UTC) - timedelta(seconds=1)
    for (method, _template), example in AUDITED.items():
        path, action, target, body, headers = example(esm)
        last = esm.sql("SELECT COALESCE(MAX(id), 0) FROM audit_log").scalar_one()
        reply = esm.raw(method, path, body, esm.admin_header() if headers is None else headers)
        assert reply.status < 300, (method, path, reply.raw)
        rows = esm.sql(
            "SELECT actor, action, target, source_ip, at FROM audit_log WHERE id > :last",
            last=last,
        ).all()
        assert len(rows) == 1, (method, path, rows)
        actor, got_action, got_target, source_ip, at = rows[0]
        assert got_action == action, (method, path)
        assert target == "*" or got_target == target, (method, path, got_target)
        assert actor and source_ip == "127.0.0.1", (method, path, actor, source_ip)
        at = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
        assert (at if at.tzinfo else at.replace(tzinfo=UTC)) >= started, (method, path)
    # Nothing in the API edits or deletes an audit record.
    audit_methods = {m for m, p, _r in endpoints(_app(esm)) if p.startswith(routes.AUDIT)}
    assert audit_methods == {"GET"}

"""Users, API tokens, the audit log, event triage and counts, readiness and metrics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from esmd_harness import ADMIN_PASSWORD, ADMIN_USER, PASSWORD, Esm, checkin_body, new_event

from trapsapi import routes
from trapsapi.admin_client import AdminClient
from trapsapi.errors import AuthError

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _refused(esm: Esm, method: str, path: str, body: Any, status: int, words: str) -> None:
    """A one-line 4xx naming the problem, and no row changed anywhere."""
    before = esm.snapshot()
    reply = esm.raw(method, path, body, esm.admin_header())
    assert reply.status == status, (method, path, body, reply.raw)
    assert "\n" not in reply.detail and words in reply.detail, reply.detail
    assert esm.snapshot() == before


def test_users_api(esm: Esm) -> None:
    created = esm.admin.create_user("alice", PASSWORD, "security_admin")
    assert created["username"] == "alice" and created["role"] == "security_admin"
    esm.admin.create_user("bob", PASSWORD)  # a viewer by default
    listed = esm.raw("GET", routes.USERS, headers=esm.admin_header())
    assert b"argon2" not in listed.raw and b"password" not in listed.raw
    roles = {u["username"]: u["role"] for u in listed.json["data"]}
    assert roles == {ADMIN_USER: "superuser", "alice": "security_admin", "bob": "viewer"}
    assert esm.admin.list_users(role="viewer")["count"] == 1

    bob = AdminClient(esm.url)
    bob.login("bob", PASSWORD)
    assert esm.admin.set_user_role("bob", "analyst")["role"] == "analyst"
    assert bob.whoami()["role"] == "analyst"  # applies at once, no new login needed

    _refused(esm, "POST", routes.USERS, {"username": "bob", "password": PASSWORD}, 409, "exists")
    for body, words in (
        ({"username": "carol", "password": "short"}, "password"),
        ({"username": "carol", "password": PASSWORD, "role": "god"}, "role"),
        ({"username": "ca rol", "password": PASSWORD}, "username"),
        ({"username": "", "password": PASSWORD}, "username"),
        ({"username": "carol", "password": PASSWORD, "password_hash": "x"}, "unknown field"),
    ):
        _refused(esm, "POST", routes.USERS, body, 422, words)
    _refused(esm, "PATCH", f"{routes.USERS}/bob", {"role": "root"}, 422, "role")
    _refused(esm, "PATCH", f"{routes.USERS}/nobody", {"role": "viewer"}, 404, "nobody")
    _refused(
        esm, "PATCH", f"{routes.USERS}/{ADMIN_USER}", {"role": "viewer"}, 409, "last superuser"
    )
    _refused(esm, "DELETE", f"{routes.USERS}/{ADMIN_USER}", None, 409, "yourself")

    esm.admin.delete_user("bob")
    with pytest.raises(AuthError):
        bob.whoami()  # their sessions went with them
    bob.close()
    assert [u["username"] for u in esm.admin.list_users()["data"]] == ["admin", "alice"]

    # Own password: the current one is asked again; other sessions of that user end.
    alice = AdminClient(esm.url)
    alice.login("alice", PASSWORD)
    other = AdminClient(esm.url)
    other.login("alice", PASSWORD)
    with pytest.raises(AuthError):
        alice.change_password("wrong password", "a new long password")
    alice.change_password(PASSWORD, "a new long password")
    assert alice.whoami()["username"] == "alice"
    with pytest.raises(AuthError):
        other.whoami()
    with pytest.raises(AuthError):
        other.login("alice", PASSWORD)
    other.login("alice", "a new long password")
    for client in (alice, other):
        client.close()
    actions = [r["action"] for r in esm.admin.list_audit(action="user.")["data"]]
    assert actions == [
        "user.change_password",
        "user.delete",
        "user.set_role",
        "user.create",
        "user.create",
    ]


def test_api_tokens(esm: Esm) -> None:
    esm.admin.create_user("ci-bot", PASSWORD, "analyst")
    created = esm.admin.create_api_token("nightly export", "ci-bot")
    token = created["token"]
    assert token.startswith("tapi_") and created["expires_at"] is None
    script = esm.anonymous(token)
    assert script.whoami() == {"username": "ci-bot", "role": "analyst"}
    assert script.list_events()["count"] == 0
    listed = esm.raw("GET", routes.API_TOKENS, headers=esm.admin_header())
    assert token.encode() not in listed.raw
    (shown,) = listed.json["data"]
    assert (shown["name"], shown["username"], shown["token"]) == ("nightly export", "ci-bot", None)
    assert shown["last_used_at"] is not None
    stored = esm.sql("SELECT token_hash FROM api_tokens").scalar_one()
    assert token not in stored

    # An agent header shape never passes as an API token, nor the other way round.
    assert (
        esm.raw(
            "POST", routes.AGENT_CHECKIN, checkin_body(), {"Authorization": f"Bearer {token}"}
        ).status
        == 401
    )

    esm.admin.revoke_api_token(created["id"])
    with pytest.raises(AuthError, match="revoked"):
        script.whoami()

    expiring = esm.admin.create_api_token("short", "ci-bot", expires_in_s=3600)
    assert expiring["expires_at"] is not None
    esm.sql("UPDATE api_tokens SET expires_at = :t WHERE id = :i", t=_past(esm), i=expiring["id"])
    with pytest.raises(AuthError, match="expired"):
        esm.anonymous(expiring["token"]).whoami()

    lasting = esm.admin.create_api_token("lasting", "ci-bot")
    esm.admin.delete_user("ci-bot")
    with pytest.raises(AuthError):
        esm.anonymous(lasting["token"]).whoami()
    assert esm.admin.list_api_tokens()["count"] == 0  # the user's tokens went with them

    _refused(esm, "POST", routes.API_TOKENS, {"name": "x", "username": "ghost"}, 422, "ghost")
    body = {"name": "x", "username": ADMIN_USER, "expires_in_s": 5}
    _refused(esm, "POST", routes.API_TOKENS, body, 422, "expires_in_s")
    _refused(esm, "POST", routes.API_TOKENS, {"username": ADMIN_USER}, 422, "name")
    _refused(esm, "DELETE", f"{routes.API_TOKENS}/nope", None, 404, "nope")


def _past(esm: Esm) -> datetime:
    past = datetime.now(UTC) - timedelta(minutes=1)
    return past.replace(tzinfo=None) if "sqlite" in esm.settings.url else past


def test_audit_log_reads_and_failed_logins(esm: Esm) -> None:
    intruder = AdminClient(esm.url)
    with pytest.raises(AuthError):
        intruder.login(ADMIN_USER, "not the password")
    with pytest.raises(AuthError):
        intruder.login("ghost", "whatever password")
    intruder.close()
    esm.admin.set_verdict("3" * 64, "malware")
    failed = esm.admin.list_audit(action="auth.login_failed")
    assert failed["count"] == 2
    ghost, admin = failed["data"]  # newest first
    assert (ghost["actor"], ghost["detail"]["reason"]) == ("ghost", "unknown user")
    assert (admin["actor"], admin["detail"]["reason"]) == (ADMIN_USER, "wrong password")
    assert admin["source_ip"] == "127.0.0.1"
    assert "not the password" not in str(failed)

    mine = esm.admin.list_audit(actor=ADMIN_USER)
    assert {r["action"] for r in mine["data"]} >= {"auth.login", "hash.set", "auth.login_failed"}
    assert esm.admin.list_audit(action="hash.")["data"][0]["target"] == "3" * 64
    assert esm.admin.list_audit(since="1h")["count"] == esm.count("audit_log")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert esm.admin.list_audit(since=future)["count"] == 0
    security_admin = esm.user("security_admin")
    assert security_admin.list_audit(limit=1)["count"] >= 1

    _refused(esm, "GET", f"{routes.AUDIT}?since=yesterday", None, 422, "since")
    _refused(esm, "GET", f"{routes.AUDIT}?limit=0", None, 422, "limit")
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        assert esm.raw(method, routes.AUDIT, {}, esm.admin_header()).status == 405
        assert esm.raw(method, f"{routes.AUDIT}/1", {}, esm.admin_header()).status in (404, 405)


def test_event_triage_and_counts(esm: Esm) -> None:
    a, b = esm.enroll("a"), esm.enroll("b")
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    events = [
        new_event(module="malware", severity="high", time=now.isoformat()),
        new_event(module="malware", severity="low", time=now.isoformat()),
        new_event(
            module="child-process", severity="high", time=(now - timedelta(hours=2)).isoformat()
        ),
        new_event(
            module="malware", severity="critical", time=(now - timedelta(days=3)).isoformat()
        ),
    ]
    a.upload_events(events)
    twin = new_event(id=events[0]["id"], module="exploit", time=now.isoformat())
    b.upload_events([twin])  # the same event ID from another agent
    analyst = esm.user("analyst", "ann")

    listed = esm.admin.list_events(status="new")
    assert listed["count"] == 5
    assert all(
        (e["status"], e["assignee"], e["comment"]) == ("new", None, "") for e in listed["data"]
    )

    target = events[1]["id"]
    done = analyst.triage_event(target, status="in_progress", assignee="ann", comment="mine")
    assert (done["status"], done["assignee"], done["comment"]) == ("in_progress", "ann", "mine")
    done = analyst.triage_event(target, status="false_positive")
    assert (done["status"], done["assignee"], done["comment"]) == ("false_positive", "ann", "mine")
    done = analyst.triage_event(target, assignee="")
    assert done["assignee"] is None
    assert esm.admin.list_events(status="false_positive")["data"][0]["id"] == target
    assert esm.admin.list_events(status="new")["count"] == 4

    path = f"{routes.EVENTS}/{events[0]['id']}"
    _refused(esm, "PATCH", path, {"status": "resolved"}, 409, "agent_id")
    resolved = esm.admin.triage_event(events[0]["id"], status="resolved", agent_id=a.agent_id)
    assert resolved["agent_id"] == a.agent_id
    other = f"{routes.EVENTS}/{events[2]['id']}"
    _refused(esm, "PATCH", other, {"assignee": "nobody"}, 422, "assignee")
    _refused(esm, "PATCH", other, {"status": "closed"}, 422, "status")
    _refused(esm, "PATCH", other, {}, 422, "at least one")
    _refused(esm, "PATCH", other, {"comment": "x" * 5000}, 422, "comment")
    _refused(esm, "PATCH", other, {"comment": "nul\x00"}, 422, "NUL")
    _refused(esm, "PATCH", other, {"agent_id": a.agent_id}, 422, "unknown field")
    _refused(
        esm, "PATCH", f"{routes.EVENTS}/{uuid.uuid4()}", {"status": "resolved"}, 404, "no event"
    )
    _refused(esm, "PATCH", f"{routes.EVENTS}/not-a-uuid", {"status": "resolved"}, 422, "event_id")
    _refused(esm, "GET", f"{routes.EVENTS}?status=closed", None, 422, "status")

    day = esm.admin.event_counts()
    assert day["bucket"] == "hour" and day["total"] == 4
    assert day["by_module"] == {"malware": 2, "child-process": 1, "exploit": 1}
    assert day["by_severity"] == {"high": 3, "low": 1}
    assert day["by_status"] == {"new": 2, "resolved": 1, "false_positive": 1}
    hour = now.replace(minute=0)
    assert [(datetime.fromisoformat(t["start"]), t["count"]) for t in day["by_time"]] == [
        (hour - timedelta(hours=2), 1),
        (hour, 3),
    ]
    month = esm.admin.event_counts(bucket="day", agent_id=a.agent_id)
    assert month["total"] == 4 and month["by_severity"]["critical"] == 1
    starts = [datetime.fromisoformat(t["start"]) for t in month["by_time"]]
    assert all(s.hour == 0 and s.minute == 0 for s in starts)
    assert sum(t["count"] for t in month["by_time"]) == 4
    assert esm.admin.event_counts(since="1h")["total"] == 3
    _refused(esm, "GET", f"{routes.EVENT_COUNTS}?bucket=week", None, 422, "bucket")
    _refused(esm, "GET", f"{routes.EVENT_COUNTS}?since=soon", None, 422, "since")


@sqlite_only
def test_readyz_and_metrics(esm: Esm) -> None:
    ready = esm.raw("GET", routes.READYZ)
    assert ready.status == 200 and ready.json["status"] == "ready"
    esm.sql("UPDATE alembic_version SET version_num = '0001'")
    stale = esm.raw("GET", routes.READYZ)
    assert stale.status == 503 and "0001" in stale.json["detail"]
    assert stale.headers.get("retry-after") or stale.headers.get("Retry-After")
    from esmd.setup import head_revision

    esm.sql("UPDATE alembic_version SET version_num = :head", head=head_revision())
    assert esm.raw("GET", routes.READYZ).status == 200

    agent = esm.enroll()
    agent.checkin(checkin_body())
    agent.checkin(checkin_body(outbox_depth=7))
    batch = [new_event(), new_event()]
    agent.upload_events(batch)
    agent.upload_events(batch)  # a resend: received again, stored once
    esm.enroll("never-seen")
    esm.admin.list_hashes()
    esm.raw("GET", f"{routes.AGENTS}/{uuid.uuid4()}", headers=esm.admin_header())
    reply = esm.raw("GET", routes.METRICS)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = reply.raw.decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples["esmd_agent_checkins_total"] == 2
    assert samples["esmd_events_received_total"] == 4
    assert samples["esmd_events_ingested_total"] == 2
    assert samples['esmd_agents{health="connected"}'] == 1
    assert samples['esmd_agents{health="disconnected"}'] == 1
    assert samples["esmd_agent_outbox_events"] == 7
    checkins = 'esmd_http_requests_total{method="POST",route="/api/v1/agent/checkin",status="200"}'
    assert samples[checkins] == 2
    by_id = 'esmd_http_requests_total{method="GET",route="/api/v1/agents/{agent_id}",status="404"}'
    assert samples[by_id] == 1  # route templates, never raw paths
    assert "# TYPE esmd_http_requests_total counter" in text
    for line in text.splitlines():  # every sample line parses as name{labels} number
        if line and not line.startswith("#"):
            float(line.rsplit(" ", 1)[1])


@sqlite_only
def test_role_changes_take_effect_and_viewer_cannot_escalate(esm: Esm) -> None:
    viewer = esm.user("viewer", "vic")
    before = esm.snapshot()
    with pytest.raises(AuthError):
        viewer.set_user_role("vic", "superuser")
    with pytest.raises(AuthError):
        viewer.create_api_token("mine", "vic")
    assert esm.snapshot() == before
    assert esm.anonymous(esm.admin.token).whoami()["username"] == ADMIN_USER
    assert ADMIN_PASSWORD  # the superuser of the fixture is unchanged

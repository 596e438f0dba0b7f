"""Admin login, sessions (expiry, logout), throttling and roles."""

from __future__ import annotations

from typing import Any

import pytest
from esmd_harness import ADMIN_PASSWORD, ADMIN_USER, Esm, checkin_body
from sqlalchemy import update

from trapsapi.admin_client import AdminClient
from trapsapi.errors import AuthError, ExitCode, RateLimited


def test_login_whoami_logout(esm: Esm) -> None:
    client = esm.anonymous()
    reply = client.login(ADMIN_USER, ADMIN_PASSWORD)
    assert (reply["username"], reply["role"]) == (ADMIN_USER, "superuser")
    assert reply["expires_at"] and len(reply["token"]) >= 43
    assert client.whoami() == {"username": ADMIN_USER, "role": "superuser"}
    stored = esm.sql("SELECT token_hash FROM admin_sessions").scalars().all()
    assert reply["token"] not in stored
    client.logout()
    with pytest.raises(AuthError, match="logged out") as info:
        client.whoami()
    assert info.value.status == 401 and info.value.exit_code == ExitCode.AUTH
    assert esm.admin.whoami()["username"] == ADMIN_USER  # other sessions are unaffected


def test_wrong_password_and_unknown_user_look_the_same(esm: Esm) -> None:
    for name, password in ((ADMIN_USER, "wrong password"), ("nobody", ADMIN_PASSWORD)):
        with pytest.raises(AuthError) as info:
            esm.anonymous().login(name, password)
        assert str(info.value) == "invalid user name or password"


def test_expired_session_is_refused(esm: Esm) -> None:
    from esmd.db.tables import ADMIN_SESSIONS
    from esmd.timeutil import utcnow

    with esm.engine.begin() as connection:
        connection.execute(update(ADMIN_SESSIONS).values(expires_at=utcnow()))
    with pytest.raises(AuthError, match="expired"):
        esm.admin.whoami()


def test_missing_and_invalid_tokens(esm: Esm) -> None:
    with pytest.raises(AuthError, match="missing credential"):
        esm.anonymous().list_agents()
    with pytest.raises(AuthError, match="invalid admin token"):
        esm.anonymous("x" * 43).list_agents()
    reply = esm.raw("GET", "/api/v1/agents", headers={"Authorization": "Basic YWRtaW46eA=="})
    assert reply.status == 401 and reply.headers.get("www-authenticate") == "Bearer"


def test_login_is_throttled_after_ten_failures(esm: Esm) -> None:
    client = esm.anonymous()
    for _ in range(10):
        with pytest.raises(AuthError):
            client.login(ADMIN_USER, "guess")
    with pytest.raises(RateLimited) as info:
        client.login(ADMIN_USER, ADMIN_PASSWORD)  # even the right password, for a while
    assert info.value.status == 429
    assert 0 < info.value.retry_after <= 15 * 60 + 1
    assert "too many failed logins" in str(info.value)
    # Other accounts are not locked out by someone guessing at this one.
    viewer = esm.user("viewer")
    assert viewer.whoami()["role"] == "viewer"
    # The window passes: the failures age out and the right password works again.
    esm.sql("UPDATE login_failures SET at = '2000-01-01 00:00:00'")
    assert client.login(ADMIN_USER, ADMIN_PASSWORD)["username"] == ADMIN_USER


def test_viewer_reads_but_cannot_write(esm: Esm) -> None:
    viewer = esm.user("viewer")
    assert viewer.whoami()["role"] == "viewer"
    for read in (viewer.list_agents, viewer.list_events, viewer.list_hashes, viewer.list_tokens):
        assert read()["count"] >= 0
    token_id = esm.admin.create_token()["id"]
    esm.admin.set_verdict("1" * 64, "malware")
    before = esm.snapshot()
    writes = [
        lambda: viewer.create_token(),
        lambda: viewer.revoke_token(token_id),
        lambda: viewer.set_verdict("2" * 64, "malware"),
        lambda: viewer.unset_verdict("1" * 64),
    ]
    for write in writes:
        with pytest.raises(AuthError, match="does not have") as info:
            write()
        assert info.value.status == 403
    assert esm.snapshot() == before
    assert esm.admin.get_hash("1" * 64)["verdict"] == "malware"


def test_real_argon2_parameters_are_used_in_production(esm: Esm) -> None:
    from argon2 import PasswordHasher

    from esmd.security import hash_password, verify_password

    digest = hash_password("a password")
    assert digest.startswith("$argon2id$")
    default = PasswordHasher()
    assert f"m={default.memory_cost},t={default.time_cost},p={default.parallelism}" in digest
    assert verify_password(digest, "a password") and not verify_password(digest, "other")
    stored = esm.sql("SELECT password_hash FROM users").scalar_one()
    assert stored.startswith("$argon2id$") and ADMIN_PASSWORD not in stored


def test_servers_sharing_a_database_share_sessions_and_policy(esm: Esm, live_esm: Any) -> None:
    """Stateless servers: a token or a verdict change made through one is seen by another."""
    from esmd.app import create_app

    agent = esm.enroll()
    version = agent.checkin(checkin_body())["policy"]["version"]
    with type(live_esm)(create_app(esm.settings)) as other:
        admin_there = AdminClient(other.url, token=esm.admin.token)
        assert admin_there.whoami()["username"] == ADMIN_USER
        admin_there.set_verdict("c" * 64, "malware")
        admin_there.close()
    policy = agent.checkin(checkin_body())["policy"]
    assert policy["version"] > version and policy["blocked_hashes"] == ["c" * 64]

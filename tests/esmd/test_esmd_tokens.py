"""Enrollment tokens: create, list, revoke, expiry, uses, and concurrent use at the limit."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from esmd_harness import Esm

from trapsapi.errors import AuthError, NotFound


def test_create_list_revoke(esm: Esm) -> None:
    created = esm.admin.create_token(label="rack 4", expires_in_s=3600, max_uses=5)
    assert created["token"] and created["label"] == "rack 4"
    assert (created["max_uses"], created["uses"], created["revoked"]) == (5, 0, False)
    assert created["created_by"] == "admin"
    listed = esm.admin.list_tokens()
    assert listed["count"] == 1
    assert listed["data"][0]["id"] == created["id"]
    assert listed["data"][0]["token"] is None  # the secret is never shown again
    stored = esm.sql("SELECT token_hash FROM enrollment_tokens").scalar_one()
    assert stored != created["token"] and created["token"] not in stored
    esm.admin.revoke_token(created["id"])
    esm.admin.revoke_token(created["id"])  # revoking twice is fine
    assert esm.admin.list_tokens()["data"][0]["revoked"] is True
    with pytest.raises(AuthError, match="revoked"):
        esm.enroll(token=created["token"])
    with pytest.raises(NotFound):
        esm.admin.revoke_token("does-not-exist")
    actions = (
        esm.sql("SELECT action FROM audit_log WHERE action LIKE 'token.%' ORDER BY id")
        .scalars()
        .all()
    )
    assert actions == ["token.create", "token.revoke"]


def test_expired_and_unknown_tokens_are_refused(esm: Esm) -> None:
    token = esm.token()
    esm.sql("UPDATE enrollment_tokens SET expires_at = '2001-01-01 00:00:00'")
    with pytest.raises(AuthError, match="expired"):
        esm.enroll(token=token)
    with pytest.raises(AuthError, match="unknown enrollment token"):
        esm.enroll(token="no-such-token")
    assert esm.count("agents") == 0


def test_a_token_has_limited_uses(esm: Esm) -> None:
    token = esm.token(max_uses=2)
    esm.enroll("a", token)
    esm.enroll("b", token)
    with pytest.raises(AuthError, match="no uses left"):
        esm.enroll("c", token)
    assert esm.count("agents") == 2
    assert esm.admin.list_tokens()["data"][0]["uses"] == 2


def test_concurrent_enrollments_never_exceed_max_uses(esm: Esm) -> None:
    token = esm.token(max_uses=3)
    barrier = threading.Barrier(8)
    outcomes: list[Any] = []

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(esm.enroll(f"race-{n}", token).agent_id)
        except AuthError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    enrolled = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, AuthError)]
    assert (len(enrolled), len(refused)) == (3, 5), outcomes
    assert esm.count("agents") == 3
    assert esm.admin.list_tokens()["data"][0]["uses"] == 3

"""Login throttling per user name and source address, shared by every esmd process through
the database, with one audited lockout (on both databases)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from esmd_harness import ADMIN_PASSWORD, ADMIN_USER
from ops_harness import OpsServer
from sqlalchemy import select

from esmd.db.tables import AUDIT_LOG
from trapsapi import routes


def _login(url: str, password: str, source: str = "127.0.0.1") -> tuple[int, dict[str, str]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "", parts.port, timeout=10, source_address=(source, 0)
    )
    try:
        body = json.dumps({"username": ADMIN_USER, "password": password})
        conn.request("POST", routes.LOGIN, body, {"Content-Type": "application/json"})
        reply = conn.getresponse()
        reply.read()
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}
    finally:
        conn.close()


def test_lockout_per_user_and_address_across_processes(esm_settings: Any) -> None:
    settings = esm_settings.model_copy(update={"login_max_failures": 3, "login_window_s": 600})
    with OpsServer(settings) as first, OpsServer(settings) as second:
        # Failures at two servers of one database add up.
        assert _login(first.url, "wrong")[0] == 401
        assert _login(second.url, "wrong")[0] == 401
        assert _login(first.url, "wrong")[0] == 401
        status, headers = _login(second.url, ADMIN_PASSWORD)
        assert status == 429 and 0 < int(headers["retry-after"]) <= 601
        assert _login(first.url, ADMIN_PASSWORD)[0] == 429

        # The same user from another address is not locked out (and its success does not
        # unlock the guessing address).
        assert _login(first.url, ADMIN_PASSWORD, source="127.0.0.2")[0] == 200
        assert _login(second.url, ADMIN_PASSWORD)[0] == 429

        with first.engine.connect() as connection:
            rows = connection.execute(
                select(AUDIT_LOG.c.action, AUDIT_LOG.c.source_ip, AUDIT_LOG.c.detail)
                .where(AUDIT_LOG.c.action.in_(["auth.login_failed", "auth.lockout"]))
                .order_by(AUDIT_LOG.c.id)
            ).all()
        assert [r.action for r in rows] == ["auth.login_failed"] * 3 + ["auth.lockout"]
        lockout = rows[-1]
        assert lockout.source_ip == "127.0.0.1"
        assert lockout.detail == {"failures": 3, "retry_after_s": 600}

        # The window passes: the address may try again.
        first.sql("UPDATE login_failures SET at = '2000-01-01 00:00:00'")
        assert _login(second.url, ADMIN_PASSWORD)[0] == 200

"""The action centre on both databases: targets, offline delivery, expiry, cancel, results."""

from __future__ import annotations

import base64
import gzip
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from esmd_harness import Esm, checkin_body
from sqlalchemy import event, update

from esmd.db.engine import Database
from esmd.db.tables import AGENTS
from esmd.services.actions import expire_due
from esmd.services.checkin import checkin
from esmd.services.policy import PolicyCache
from trapsapi import routes
from trapsapi.models import CheckinRequest


def _checkin(esm: Esm, agent: Any, hostname: str) -> list[dict[str, Any]]:
    reply = agent.checkin(checkin_body(hostname=hostname))
    actions: list[dict[str, Any]] = reply["actions"]
    return actions


def _states(esm: Esm, action_id: str) -> dict[str, str]:
    detail = esm.admin.get_action(action_id)
    return {d["hostname"]: d["state"] for d in detail["deliveries"]}


def _past(esm: Esm) -> datetime:
    past = datetime.now(UTC) - timedelta(minutes=1)
    return past.replace(tzinfo=None) if "sqlite" in esm.settings.url else past


def test_targets_delivery_results_and_cancel(esm: Esm) -> None:
    web1, web2, db2 = (esm.enroll(h) for h in ("web-1", "web-2", "db-2"))
    for agent, host in ((web1, "web-1"), (web2, "web-2"), (db2, "db-2")):
        _checkin(esm, agent, host)
    version = db2.checkin(checkin_body(hostname="db-2"))["policy"]["version"]
    by_query = esm.admin.create_action(
        "scan", {"query": {"hostname": "WEB-*", "health": "connected"}}, {"paths": ["/usr"]}
    )
    # The wake channel was told: the targets' next long-poll answers at once, others wait.
    for agent, woken in ((web1, True), (web2, True), (db2, False)):
        reply = esm.raw(
            "GET",
            f"{routes.AGENT_WAIT}?policy_version={version}&timeout=1",
            None,
            esm.agent_header(agent),
        )
        assert (reply.status == 200 and reply.json["reason"] == "pending") is woken, reply
    assert by_query["agents"] == 2 and by_query["progress"] == {"pending": 2}
    assert by_query["params"] == {"paths": ["/usr"], "max_files": 100000, "max_seconds": 300}
    by_label = _label_or_query(esm, [db2.agent_id, web2.agent_id])
    single = esm.admin.create_action("kill_process", {"agent_id": db2.agent_id}, {"pid": 4242})

    # web-1 is "offline" until now: it gets exactly its one action at its next check-in.
    (order,) = _checkin(esm, web1, "web-1")
    assert (order["id"], order["type"], order["params"]["paths"]) == (
        by_query["id"],
        "scan",
        ["/usr"],
    )
    assert _checkin(esm, web1, "web-1") == []  # delivered once
    assert _states(esm, by_query["id"]) == {"web-1": "delivered", "web-2": "pending"}
    orders = _checkin(esm, db2, "db-2")
    assert [o["type"] for o in orders] == ["checkin", "kill_process"]

    # Results: idempotent, and only the agent's own.
    path = f"{routes.AGENT_ACTIONS}/{by_query['id']}/result"
    body = {"state": "succeeded", "result": {"hashed": 3, "matches": []}}
    for _ in range(2):
        reply = esm.raw("POST", path, body, esm.agent_header(web1))
        assert (reply.status, reply.json["state"]) == (200, "succeeded")
    other = esm.raw("POST", path, body, esm.agent_header(db2))
    assert other.status == 404
    assert esm.raw("POST", path, body, esm.admin_header()).status == 401
    audits = esm.admin.list_audit(action="action.result")["data"]
    assert [a["target"] for a in audits] == [by_query["id"]]  # one record, not two
    big = {"state": "failed", "result": {"x": "y" * 70_000}}
    assert (
        esm.raw(
            "POST", path.replace(by_query["id"], single["id"]), big, esm.agent_header(db2)
        ).status
        == 422
    )

    # Cancel: pending rows become cancelled, delivered ones stay.
    cancelled = esm.admin.cancel_action(by_query["id"])
    assert cancelled["cancelled"] and cancelled["progress"] == {"succeeded": 1, "cancelled": 1}
    assert _checkin(esm, web2, "web-2") == [{**_checkin_order(by_label), "id": by_label["id"]}]
    again = esm.raw("POST", f"{routes.ACTIONS}/{by_query['id']}/cancel", None, esm.admin_header())
    assert again.status == 409 and "already cancelled" in again.detail

    listed = esm.admin.list_actions(agent_id=db2.agent_id)
    assert [a["id"] for a in listed["data"]] == [single["id"], by_label["id"]]
    assert esm.admin.list_actions(type="scan")["count"] == 1
    assert esm.admin.list_actions(since="1h")["count"] == 3


def _label_or_query(esm: Esm, agent_ids: list[str]) -> dict[str, Any]:
    """A checkin action for these agents by label where agents have labels (the policies
    work adds ``agents.labels``); without them a label target is refused, and a query
    (``*-2``) names the same agents."""
    labels = AGENTS.c.get("labels")
    if labels is None:
        refused = esm.raw(
            "POST",
            routes.ACTIONS,
            {"type": "checkin", "target": {"label": "db"}},
            esm.admin_header(),
        )
        assert refused.status == 422 and "no agent labels" in refused.detail
        return esm.admin.create_action("checkin", {"query": {"hostname": "*-2"}})
    with esm.engine.begin() as connection:
        connection.execute(
            update(AGENTS).where(AGENTS.c.agent_id.in_(agent_ids)).values(labels=["db", "x"])
        )
    return esm.admin.create_action("checkin", {"label": "db"})


def _checkin_order(action: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": action["type"],
        "params": action["params"],
        "expires_at": datetime.fromisoformat(action["expires_at"]).isoformat(),
    }


def test_expiry_is_lazy_applied_at_checkin_and_swept(esm: Esm) -> None:
    a, b = esm.enroll("exp-a"), esm.enroll("exp-b")
    action = esm.admin.create_action("checkin", {"query": {"hostname": "exp-*"}}, expires_in_s=60)
    esm.sql("UPDATE actions SET expires_at = :t WHERE id = :i", t=_past(esm), i=action["id"])
    shown = esm.admin.get_action(action["id"])
    assert shown["progress"] == {"expired": 2} and shown["done"]
    assert _checkin(esm, a, "exp-a") == []  # not delivered once expired
    rows = esm.sql("SELECT state FROM action_agents ORDER BY state").scalars().all()
    assert rows == ["expired", "pending"]  # the check-in wrote it; the sweep does the rest
    assert expire_due(Database.from_url(esm.settings.url, 1, 0)) == 1
    assert esm.sql("SELECT state FROM action_agents").scalars().all() == ["expired", "expired"]
    assert _checkin(esm, b, "exp-b") == []
    refused = esm.raw("POST", f"{routes.ACTIONS}/{action['id']}/cancel", None, esm.admin_header())
    assert refused.status == 409


def test_bad_actions_are_refused_with_one_line_and_nothing_changes(esm: Esm) -> None:
    agent = esm.enroll("bad")
    target = {"agent_id": agent.agent_id}
    cases = [
        ({"type": "scan", "target": target, "params": {}}, 422, "params.paths"),
        ({"type": "scan", "target": target, "params": {"paths": ["rel"]}}, 422, "absolute"),
        ({"type": "kill_process", "target": target, "params": {"pid": 1}}, 422, "params.pid"),
        ({"type": "quarantine", "target": target, "params": {}}, 422, "path or sha256"),
        ({"type": "checkin", "target": target, "params": {"x": 1}}, 422, "unknown parameter"),
        ({"type": "isolate", "target": target, "params": {"grace_s": 1}}, 422, "grace_s"),
        ({"type": "format_disk", "target": target}, 422, "type"),
        ({"type": "checkin", "target": {}}, 422, "exactly one"),
        ({"type": "checkin", "target": {"agent_id": "nope"}}, 404, "nope"),
        ({"type": "checkin", "target": {"label": "none"}}, 422, "label"),
        ({"type": "checkin", "target": {"query": {"hostname": "zz*"}}}, 422, "no agent"),
    ]
    before = esm.snapshot()
    for body, status, words in cases:
        reply = esm.raw("POST", routes.ACTIONS, body, esm.admin_header())
        assert reply.status == status, (body, reply.raw)
        assert words in reply.detail and "\n" not in reply.detail, (body, reply.detail)
    assert esm.snapshot() == before
    viewer = esm.user("viewer")
    denied = esm.raw(
        "POST",
        routes.ACTIONS,
        {"type": "checkin", "target": target},
        {"Authorization": f"Bearer {viewer.token}"},
    )
    assert denied.status == 403


def test_log_upload_and_quarantine_view(esm: Esm) -> None:
    agent = esm.enroll("host-q")
    logs = esm.admin.create_action("retrieve_logs", {"agent_id": agent.agent_id})
    quarantine = esm.admin.create_action(
        "quarantine", {"agent_id": agent.agent_id}, {"path": "/tmp/evil"}
    )
    _checkin(esm, agent, "host-q")
    content = gzip.compress(b"trapsd log\n" * 100)
    upload = {
        "content_b64": base64.b64encode(content).decode(),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    path = f"{routes.AGENT_ACTIONS}/{logs['id']}/logs"
    for _ in range(2):
        assert agent.upload_action_logs(logs["id"], upload)["size"] == len(content)
    wrong = {**upload, "sha256": "0" * 64}
    assert esm.raw("POST", path, wrong, esm.agent_header(agent)).status == 422
    not_logs = f"{routes.AGENT_ACTIONS}/{quarantine['id']}/logs"
    assert esm.raw("POST", not_logs, upload, esm.agent_header(agent)).status == 409
    bundle = esm.admin.action_logs(logs["id"], agent.agent_id)
    assert gzip.decompress(base64.b64decode(bundle["content_b64"])) == b"trapsd log\n" * 100
    assert esm.admin.get_action(logs["id"])["deliveries"][0]["has_logs"]

    item = {"id": "a" * 32, "path": "/tmp/evil", "sha256": "b" * 64, "time": "2026-11-29T10:00:00Z"}
    agent.report_action(
        quarantine["id"], {"state": "succeeded", "result": {"quarantined": [item]}, "detail": ""}
    )
    (entry,) = esm.admin.list_quarantine()["data"]
    assert (entry["quarantine_id"], entry["path"], entry["hostname"]) == (
        "a" * 32,
        "/tmp/evil",
        "host-q",
    )
    restore = esm.admin.create_action(
        "restore", {"agent_id": agent.agent_id}, {"quarantine_id": "a" * 32}
    )
    _checkin(esm, agent, "host-q")
    agent.report_action(
        restore["id"], {"state": "succeeded", "result": {"quarantine_id": "a" * 32}, "detail": ""}
    )
    assert esm.admin.list_quarantine()["count"] == 0


def test_a_checkin_with_nothing_pending_costs_no_extra_statement(esm: Esm) -> None:
    """The hot path: the status UPDATE answers "anything pending?"; only then more SQL."""
    agent = esm.enroll("quiet")
    db = Database.from_url(esm.settings.url, 1, 0)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "SET", "COMMIT")):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    request = CheckinRequest.model_validate(checkin_body(hostname="quiet"))
    credential = f"{agent.agent_id}.{agent.secret}"
    try:
        checkin(db, PolicyCache(3600), credential, request, [])
        statements.clear()  # the first one also loaded the policy into the cache
        assert checkin(db, PolicyCache(3600), credential, request, []).actions == []
        quiet = len(statements)
        esm.admin.create_action("checkin", {"agent_id": agent.agent_id})
        statements.clear()
        (order,) = checkin(db, PolicyCache(3600), credential, request, []).actions
        busy = len(statements)
    finally:
        db.dispose()
    assert order["type"] == "checkin"
    assert busy == quiet + 2  # the pending SELECT and the UPDATE to delivered

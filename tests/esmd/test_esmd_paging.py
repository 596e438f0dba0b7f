"""Large lists: the keyset cursor (every row exactly once while rows are inserted meanwhile,
every filter and sort respected, offset still working) and the capped count, against the
real app in-process on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body, new_event

from esmd.api.routes import events as event_routes
from esmd.services import paging
from trapsapi.admin_client import AdminClient

BASE = datetime(2026, 11, 1, tzinfo=UTC)


def _events(count: int, start: int = 0, **fields: Any) -> list[dict[str, Any]]:
    """Events three to a second, so that many share a time (the seq must break ties)."""
    return [
        new_event(
            time=(BASE + timedelta(seconds=(start + i) // 3)).isoformat(),
            severity=("low", "high", "critical")[i % 3],
            module=("malware", "restrictions")[i % 2],
            **fields,
        )
        for i in range(count)
    ]


def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


def test_a_cursor_walk_returns_every_event_once_while_events_arrive(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    agent.checkin(checkin_body(hostname="web-01"))
    before = _events(120)
    agent.upload_events(before)
    seen: list[str] = []
    later = itertools.count(1000)
    for number, page in enumerate(esm.admin.pages(esm.admin.list_events, limit=7)):
        seen += _ids(page["data"])
        # Meanwhile: events newer than the walk, older than the cursor, and at its instant.
        tied = page["data"][-1]["time"] if page["data"] else BASE.isoformat()
        agent.upload_events(
            [
                new_event(time=(BASE + timedelta(days=1, seconds=next(later))).isoformat()),
                new_event(time=(BASE - timedelta(days=1, seconds=next(later))).isoformat()),
                new_event(time=tied),
            ]
        )
        assert number < 200, "the walk does not end"
    assert len(seen) == len(set(seen)), "a row came twice"
    assert set(_ids(before)) <= set(seen)
    times = [e["time"] for e in esm.admin.list_events(limit=1000)["data"]]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize("sort", ["time", "received", "received_desc"])
def test_cursor_pages_equal_offset_pages_for_every_filter_and_sort(esm: Esm, sort: str) -> None:
    web, db = esm.enroll("web-01"), esm.enroll("db-01")
    web.upload_events(_events(40))
    db.upload_events(_events(25, start=40))
    triaged = esm.admin.list_events(limit=5)["data"]
    for event in triaged:
        esm.admin.triage_event(event["id"], status="in_progress", assignee="admin")
    filters: list[dict[str, Any]] = [
        {},
        {"severity": "high"},
        {"module": "restrictions"},
        {"agent_id": db.agent_id},
        {"status": "in_progress"},
        {"assignee": "admin"},
        {"hostname": "WEB"},
        {"sha256": "AB" * 32},
        {"since": (BASE + timedelta(seconds=10)).isoformat()},
        {"received_since": "1h", "module": "malware"},
    ]
    for given in filters:
        whole = esm.admin.list_events(sort=sort, limit=1000, **given)
        walked = list(AdminClient.rows(esm.admin.list_events, sort=sort, limit=4, **given))
        assert _ids(walked) == _ids(whole["data"]), given
        assert whole["count"] == len(whole["data"]) and not whole["count_capped"]
        by_offset = esm.admin.list_events(sort=sort, limit=4, offset=4, **given)["data"]
        assert _ids(by_offset) == _ids(whole["data"])[4:8], given
    assert len(list(AdminClient.rows(esm.admin.list_events, status="in_progress"))) == 5


def test_bad_cursors_are_one_line_422s(esm: Esm) -> None:
    esm.enroll("web-01").upload_events(_events(5))
    cursor = esm.admin.list_events(limit=2, severity="low")["next_cursor"]
    assert cursor
    header = esm.admin_header()
    for query, words in [
        (f"cursor={cursor}", "filters"),  # made for severity=low
        (f"cursor={cursor}&severity=low&sort=received", "filters"),
        (f"cursor={cursor}&severity=low&offset=2", "not both"),
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WzFd", "cursor"),  # base64 of [1]
        ("cursor=" + "A" * 600, "cursor"),
    ]:
        reply = esm.raw("GET", f"/api/v1/events?{query}", headers=header)
        assert reply.status == 422, query
        assert words in reply.detail and "\n" not in reply.detail
    page = esm.admin.list_events(limit=2, severity="low", cursor=cursor)
    assert len(page["data"]) == 0 or page["data"][0]["severity"] in {"low", "high", "critical"}


def test_counts_stop_at_the_cap(esm: Esm, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paging, "COUNT_CAP", 10)
    agent = esm.enroll("web-01")
    agent.upload_events(_events(12))
    page = esm.admin.list_events(limit=3)
    assert (page["count"], page["count_capped"]) == (10, True)
    assert page["next_cursor"]
    exact = esm.admin.list_events(limit=3, severity="critical")
    assert (exact["count"], exact["count_capped"]) == (4, False)
    # Dense severities page through the sort's index on SQLite: the same rows either way.
    monkeypatch.setattr(paging, "COUNT_CAP", 5)
    assert esm.admin.list_events(limit=3, severity="high")["count_capped"]
    dense = list(AdminClient.rows(esm.admin.list_events, limit=3, severity="high"))
    monkeypatch.setattr(paging, "COUNT_CAP", 10_000)
    assert _ids(dense) == _ids(esm.admin.list_events(severity="high")["data"])
    assert len(dense) == 8
    monkeypatch.setattr(paging, "COUNT_CAP", 10)
    last = esm.admin.list_events(limit=3, offset=9)
    assert len(last["data"]) == 3 and last["next_cursor"] is None
    assert len(list(AdminClient.rows(esm.admin.list_events, limit=5))) == 12
    monkeypatch.setattr(event_routes, "HOSTNAME_COUNT_CAP", 2)  # no index: it stops sooner
    by_host = esm.admin.list_events(limit=3, hostname="WEB")
    assert (by_host["count"], by_host["count_capped"], len(by_host["data"])) == (2, True, 3)


def test_agents_audit_and_actions_walk_with_the_cursor(esm: Esm) -> None:
    agents = [esm.enroll(f"host-{i % 4}") for i in range(9)]  # hostnames repeat
    for agent in agents:
        agent.checkin(checkin_body(hostname="x"))  # shared hostnames: agent_id breaks ties
    for name in ("agents", "audit", "actions"):
        if name == "actions":
            for agent in agents[:7]:
                esm.admin.create_action("checkin", {"agent_id": agent.agent_id})
        call = getattr(esm.admin, f"list_{name}")
        whole = call(limit=1000)
        walked = list(AdminClient.rows(call, limit=2))
        key = {"agents": "agent_id", "audit": "id", "actions": "id"}[name]
        assert [r[key] for r in walked] == [r[key] for r in whole["data"]], name
        assert len(walked) == whole["count"] > 2 and whole["next_cursor"] is None
    agent_ids = [a["agent_id"] for a in AdminClient.rows(esm.admin.list_agents, limit=3)]
    assert sorted(agent_ids) == sorted(a.agent_id for a in agents)
    some = list(AdminClient.rows(esm.admin.list_audit, limit=2, action="action."))
    assert some and all(r["action"].startswith("action.") for r in some)

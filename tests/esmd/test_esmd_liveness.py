"""Write-behind of pure liveness (esmd.services.liveness), on both databases: a repeated
check-in is answered without a transaction and its time and telemetry reach the database
within the flush interval and at shutdown; anything that changes state is committed before
the reply; revocation, queued actions, targeting and policy changes, and writes by anyone
else take the agent out of memory."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body

from trapsapi import routes
from trapsapi.agent_client import AgentClient
from trapsapi.errors import AuthError

FOOT = checkin_body()["footprint"]


def _time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).replace(tzinfo=UTC)


def _row(esm: Esm, agent: AgentClient) -> Any:
    return esm.sql(
        "SELECT last_checkin_at, outbox_depth, hostname FROM agents WHERE agent_id = :a",
        a=agent.agent_id,
    ).one()


def _steady(agent: AgentClient, **body: Any) -> dict[str, Any]:
    """Check in until the agent's row is at a fixed point (the 2nd check-in: the policy
    served is then the one served before)."""
    agent.checkin(checkin_body(**body))
    reply: dict[str, Any] = agent.checkin(checkin_body(**body))
    return reply


@pytest.fixture
def flush_s() -> float:
    return 1.0


@pytest.fixture(autouse=True)
def _flush_interval(flush_s: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ESMD_LIVENESS_FLUSH_S", str(flush_s))  # read by esm_settings


SLOW_FLUSH = pytest.mark.parametrize("flush_s", [60.0])  # only shutdown writes


@SLOW_FLUSH
def test_a_repeat_is_answered_from_memory_and_written_at_shutdown(esm: Esm, live_esm: Any) -> None:
    agent = esm.enroll("web-01")
    steady = _steady(agent)
    written = _row(esm, agent)
    assert written.outbox_depth == 0

    reply = agent.checkin(checkin_body(outbox_depth=7))
    assert reply["agent_id"] == agent.agent_id
    assert reply["policy"] == steady["policy"] and reply["servers"] == steady["servers"]
    assert reply["actions"] == []
    assert _time(reply["server_time"]) > _time(steady["server_time"])
    assert tuple(_row(esm, agent)) == tuple(written)  # nothing written yet

    renamed = agent.checkin(checkin_body(hostname="web-01b", outbox_depth=7))
    row = _row(esm, agent)  # a state change: committed before the reply
    assert row.hostname == "web-01b" and row.outbox_depth == 7
    assert _time(row.last_checkin_at) == _time(renamed["server_time"])

    agent.checkin(checkin_body(hostname="web-01b", outbox_depth=7))
    last = agent.checkin(checkin_body(hostname="web-01b", outbox_depth=9))
    assert _row(esm, agent).outbox_depth == 7
    live_esm.__exit__(None, None, None)  # shutdown writes what is pending
    row = _row(esm, agent)
    assert row.outbox_depth == 9
    assert _time(row.last_checkin_at) == _time(last["server_time"])


def test_liveness_reaches_the_database_within_the_flush_interval(esm: Esm) -> None:
    assert esm.settings.liveness_flush_s == 1.0
    agent = esm.enroll("web-01")
    _steady(agent)
    reply = agent.checkin(checkin_body(outbox_depth=5))
    answered = time.monotonic()
    while _row(esm, agent).outbox_depth != 5:
        assert time.monotonic() - answered < 3.0, "not written within the flush interval"
        time.sleep(0.05)
    assert _time(_row(esm, agent).last_checkin_at) == _time(reply["server_time"])


def test_a_revoked_agent_is_refused_at_its_next_checkin(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    _steady(agent)
    agent.checkin(checkin_body())
    esm.admin.revoke_agent(agent.agent_id)
    with pytest.raises(AuthError):
        agent.checkin(checkin_body())


def test_a_queued_action_comes_with_the_next_checkin(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    _steady(agent)
    action = esm.admin.create_action("checkin", {"agent_id": agent.agent_id})
    reply = agent.checkin(checkin_body())
    assert [a["id"] for a in reply["actions"]] == [action["id"]]


@SLOW_FLUSH
def test_new_labels_and_a_new_policy_apply_at_the_next_checkin(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    steady = _steady(agent)
    rule = {"restrictions": {"mode": "off"}}
    esm.admin.apply_policies(
        {
            "policies": [
                {
                    "name": "db",
                    "priority": 5,
                    "targets": {"include": {"labels": ["db"]}},
                    "rules": rule,
                }
            ]
        }
    )
    moved = agent.checkin(checkin_body())
    assert moved["policy"]["version"] > steady["policy"]["version"]
    assert moved["policy"]["modules"]["restrictions"]["mode"] != "off"
    agent.checkin(checkin_body())  # steady again at the new version
    esm.admin.set_agent_labels(agent.agent_id, ["db"])
    relabelled = agent.checkin(checkin_body())
    assert relabelled["policy"]["modules"]["restrictions"]["mode"] == "off"
    assert _time(_row(esm, agent).last_checkin_at) == _time(relabelled["server_time"])


def test_a_row_written_by_someone_else_is_not_overwritten(esm: Esm) -> None:
    """Another esmd process (or the declared route) wrote the agent since this one did:
    the flush keeps the newer time and this process forgets the agent, whose next check-in
    here takes the full way (and stores its state again)."""
    agent = esm.enroll("web-01")
    _steady(agent)
    agent.checkin(checkin_body(outbox_depth=3))  # from memory
    later = "2100-01-01 00:00:00.000000"
    esm.sql(
        "UPDATE agents SET last_checkin_at = :t, hostname = 'elsewhere' WHERE agent_id = :a",
        t=datetime(2100, 1, 1, tzinfo=UTC) if esm.settings.url.startswith("postgres") else later,
        a=agent.agent_id,
    )
    time.sleep(2.5)  # a flush came
    row = _row(esm, agent)
    assert (row.hostname, row.outbox_depth) == ("elsewhere", 0)
    assert _time(row.last_checkin_at).year == 2100
    agent.checkin(checkin_body())  # the full way: its state is stored before the reply
    assert _row(esm, agent).hostname == "web-01"


def test_telemetry_that_cannot_be_stored_is_refused_as_on_the_full_way(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    _steady(agent)
    header = esm.agent_header(agent)
    for body in (
        checkin_body(outbox_depth=2**63),
        checkin_body(footprint={**FOOT, "disk_bytes": 2**64}),
    ):
        reply = esm.raw("POST", routes.AGENT_CHECKIN, body, header)
        assert reply.status == 422 and "out of range" in reply.detail, reply.json
    assert esm.raw("POST", routes.AGENT_CHECKIN, checkin_body(), header).status == 200

"""Every value of an uploaded event is stored as sent, on SQLite and PostgreSQL (whose ingest
sends the batch as one array per column: NULLs, quotes, braces and the text "NULL" must
survive the array encoding), and a re-sent batch adds nothing."""

from __future__ import annotations

import json
import uuid
from typing import Any

from esmd_harness import Esm, new_event

AWKWARD = 'a "quoted", {braced} \\back\\slashed, NULL-ish; ünïcode ✓'


def _stored(esm: Esm, agent_id: str) -> dict[str, tuple[Any, ...]]:
    rows = esm.sql(
        "SELECT id, hostname, module, severity, action, process_path, sha256, pid, ppid,"
        ' parent_path, "user", uid, cmdline, details, status FROM events WHERE agent_id = :a',
        a=agent_id,
    ).all()
    stored = {}
    for row in rows:
        values = list(row[1:])
        values[12] = json.loads(values[12]) if isinstance(values[12], str) else values[12]
        stored[str(uuid.UUID(str(row[0])))] = tuple(values)
    return stored


def test_event_values_survive_the_batch_insert(esm: Esm) -> None:
    agent = esm.enroll("values")
    sparse = [
        new_event(sha256=None, pid=None, ppid=None, parent_path=None, user=None, uid=None)
        for _ in range(3)
    ]
    awkward = new_event(
        process_path=AWKWARD,
        cmdline="NULL",
        user="NULL",
        parent_path="",
        pid=2**63 - 1,
        uid=-1,
        details={"nested": {"list": [1, 2.5, None, "NULL"]}, "q": AWKWARD},
    )
    ack = agent.upload_events([*sparse, awkward])
    assert ack["inserted"] == 4
    stored = _stored(esm, agent.agent_id)
    assert stored[sparse[0]["id"]] == (
        "values", "malware", "high", "prevented", "/tmp/evil",
        None, None, None, None, None, None, "/tmp/evil --now", {"why": "test"}, "new",
    )  # fmt: skip
    assert stored[awkward["id"]] == (
        "values", "malware", "high", "prevented", AWKWARD, "ab" * 32,
        2**63 - 1, 1, "", "NULL", -1, "NULL", awkward["details"], "new",
    )  # fmt: skip
    again = agent.upload_events([awkward, new_event(id=sparse[1]["id"])])
    assert again["inserted"] == 0 and len(again["acked"]) == 2
    assert len(_stored(esm, agent.agent_id)) == 4


def test_a_large_batch_is_stored_whole(esm: Esm) -> None:
    agent = esm.enroll("bulk")
    events = [new_event(pid=n, details={"n": n}) for n in range(500)]
    assert agent.upload_events(events)["inserted"] == 500
    stored = _stored(esm, agent.agent_id)
    assert {values[6] for values in stored.values()} == set(range(500))
    assert agent.upload_events(events[250:])["inserted"] == 0

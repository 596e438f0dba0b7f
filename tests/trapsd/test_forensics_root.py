"""retrieve_forensics on a real agent: a blocked execution writes a bundle, the action
uploads it, and the ESM serves it (listed, in the event's detail, downloaded intact)."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import ROOT_ONLY, Agents, make_binary, trapsd, wait_for
from test_actions_root import run_actions
from test_agent_with_esm import agent_row, attack, enroll, events_for

pytest.importorskip("esmd.app", reason="esmd is not built yet")
pytestmark = [pytest.mark.timeout(150, method="thread"), ROOT_ONLY]


def test_a_real_event_bundle_reaches_the_esm(
    live_esm: Any, admin: Any, agents: Agents, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = enroll(admin, live_esm.url, state)
    agents.start(state)
    wait_for(lambda: agent_row(admin, agent_id), 20)
    evil, sha256 = make_binary(tmp_path, "true", "forensic-true")
    admin.set_verdict(sha256, "malware", "forensics test")
    assert trapsd("checkin", "--state-dir", state).returncode == 0
    attack(evil)
    (event,) = wait_for(lambda: events_for(admin, agent_id, sha256), 10)
    assert event["details"]["forensics_id"] == event["id"]
    local = state / "forensics" / f"{event['id']}.json.gz"
    wait_for(local.exists, 10)

    missing = str(uuid.uuid4())
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    in_an_hour = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(tzinfo=None).isoformat()
    by_id, recent, future = run_actions(
        admin,
        state,
        agent_id,
        ("retrieve_forensics", {"event_ids": [event["id"], missing]}),
        ("retrieve_forensics", {"recent": 5, "since": hour_ago}),
        ("retrieve_forensics", {"since": in_an_hour}),
    )
    assert by_id["state"] == "succeeded", by_id
    (sent,) = by_id["result"]["sent"]
    assert (sent["bundle_id"], sent["duplicate"]) == (event["id"], False)
    assert by_id["result"]["missing"] == [missing]
    assert by_id["detail"] == "1 bundle(s) sent, 1 not sent"
    assert recent["state"] == "succeeded"
    assert [(s["id"], s["duplicate"]) for s in recent["result"]["sent"]] == [(sent["id"], True)]
    assert future["state"] == "succeeded" and future["result"]["sent"] == []

    (stored,) = admin.list_forensics(event_id=event["id"])["data"]
    assert (stored["id"], stored["agent_id"], stored["size"]) == (
        sent["id"],
        agent_id,
        local.stat().st_size,
    )
    assert [ref["id"] for ref in admin.get_event(event["id"])["forensics"]] == [sent["id"]]
    chunks: list[bytes] = []
    admin.download_forensics(sent["id"], chunks.append)
    assert b"".join(chunks) == local.read_bytes()
    bundle = json.loads(gzip.decompress(b"".join(chunks)))
    assert bundle["event"]["id"] == event["id"] and bundle["event"]["sha256"] == sha256

    (nothing,) = run_actions(admin, state, agent_id, ("retrieve_forensics", {"event_id": missing}))
    assert nothing["state"] == "failed"
    assert nothing["detail"] == f"no forensic bundle sent (missing: {missing})"

    # Bounded: a bundle above the 2 MiB an upload carries, and one beyond max_bytes.
    big, mid = str(uuid.uuid4()), str(uuid.uuid4())
    (state / "forensics" / f"{big}.json.gz").write_bytes(os.urandom(3 * 1024 * 1024))
    (state / "forensics" / f"{mid}.json.gz").write_bytes(os.urandom(5000))
    (bounded,) = run_actions(
        admin,
        state,
        agent_id,
        ("retrieve_forensics", {"bundle_ids": [big, mid], "max_bytes": 4096}),
    )
    assert bounded["state"] == "failed"
    assert bounded["detail"] == f"no forensic bundle sent (too large: {big}; over budget: {mid})"
    assert admin.list_forensics(agent_id=agent_id)["count"] == 1

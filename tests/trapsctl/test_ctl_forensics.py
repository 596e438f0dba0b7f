"""``trapsctl forensics``: golden outputs of list/show, then list/get/retrieve/delete against a
real esmd with an agent (the trapsapi agent protocol) answering the retrieve action."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ctl_helpers import assert_golden, run_cli
from test_ctl_live import as_admin, enrolled_agent, security_event

from trapsapi.admin_client import AdminClient
from trapsapi.agent_client import AgentClient
from trapsctl.output import byte_size

__all__ = ["as_admin"]  # the fixture, used by name
BUNDLE = {
    "id": "5d9a0c1e2f3b4a5c6d7e8f9012345678",
    "agent_id": "a1b2c3d4-0000-4000-8000-000000000001",
    "hostname": "web-01",
    "bundle_id": "e0000000-0000-4000-8000-000000000001",
    "event_id": "e0000000-0000-4000-8000-000000000001",
    "action_id": "0f" * 16,
    "size": 48_213,
    "sha256": "3f" * 32,
    "created_at": "2026-11-29T08:31:02Z",
    "received_at": "2026-11-29T08:40:00Z",
}
PAGE = {"data": [BUNDLE, {**BUNDLE, "id": "6" * 32, "hostname": "db-02", "size": 900}], "count": 2}


class FakeForensicsClient:
    def __init__(self, *args: Any) -> None:
        pass

    def list_forensics(self, **filters: Any) -> Any:
        return json.loads(json.dumps(PAGE))

    def get_forensics(self, bundle_id: str) -> Any:
        return dict(BUNDLE)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import trapsapi.admin_client

    monkeypatch.setattr(trapsapi.admin_client, "AdminClient", FakeForensicsClient)
    monkeypatch.setenv("TRAPSCTL_SERVER", "https://esm.example.org:2125")
    monkeypatch.setenv("TRAPSCTL_TOKEN", "tps_admin_TOKEN")


@pytest.mark.usefixtures("fake_server")
@pytest.mark.parametrize("fmt", ["table", "json", "yaml", "csv"])
def test_list_golden(fmt: str) -> None:
    result = run_cli("forensics", "list", "-o", fmt)
    assert result.exit_code == 0, result.output
    assert_golden(f"forensics_list.{ {'table': 'txt'}.get(fmt, fmt) }", result.stdout)


@pytest.mark.usefixtures("fake_server")
def test_show_golden_and_quiet() -> None:
    for fmt, name in (("table", "txt"), ("json", "json")):
        result = run_cli("forensics", "show", BUNDLE["id"], "-o", fmt)
        assert result.exit_code == 0, result.output
        assert_golden(f"forensics_show.{name}", result.stdout)
    quiet = run_cli("forensics", "list", "-q")
    assert quiet.stdout == f"{BUNDLE['id']}\n{'6' * 32}\n"


def test_size_is_human() -> None:
    assert [byte_size(v) for v in (None, 900, 48_213, 3 * 1024 * 1024)] == [
        "-",
        "900 B",
        "47.1 KiB",
        "3.0 MiB",
    ]


def _answer_one_action(agent: AgentClient, hostname: str, content: bytes, event_id: str) -> None:
    """What trapsd does for a retrieve_forensics action: upload the bundle, report."""
    for _ in range(200):
        reply = agent.checkin(
            {  # type: ignore[typeddict-item]
                "hostname": hostname,
                "os": "linux",
                "os_version": "test",
                "agent_version": "0.1.0",
                "ips": [],
                "modules": [],
                "footprint": None,
                "policy_version": None,
                "outbox_depth": 0,
                "events_dropped": 0,
            }
        )
        if reply["actions"]:
            break
        threading.Event().wait(0.05)
    (order,) = reply["actions"]
    assert order["params"]["event_ids"] == [event_id]
    ack = agent.upload_forensics(
        order["id"],
        {
            "bundle_id": event_id,
            "event_id": event_id,
            "created_at": datetime.now(UTC).isoformat(),
            "content_b64": base64.b64encode(content).decode(),
            "sha256": hashlib.sha256(content).hexdigest(),
        },
    )
    sent = [{"bundle_id": event_id, "id": ack["id"], "size": len(content), "duplicate": False}]
    agent.report_action(
        order["id"], {"state": "succeeded", "result": {"sent": sent}, "detail": "1 bundle(s) sent"}
    )


def test_retrieve_wait_list_get_and_delete_against_a_live_esm(
    as_admin: AdminClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = enrolled_agent(as_admin, "forensic-01")
    event = security_event("high")
    agent.upload_events([event])
    content = gzip.compress(json.dumps({"event": event, "process": {"pid": 42}}).encode())

    never = run_cli("forensics", "retrieve", agent.agent_id, "--wait", "--timeout", "1")
    assert never.exit_code == 1 and "no result within 1 s" in never.stderr
    as_admin.cancel_action(as_admin.list_actions(type="retrieve_forensics")["data"][0]["id"])

    answer = threading.Thread(
        target=_answer_one_action, args=(agent, "forensic-01", content, event["id"])
    )
    answer.start()
    try:
        done = run_cli(
            "forensics",
            "retrieve",
            agent.agent_id,
            "--event",
            event["id"],
            "--wait",
            "--timeout",
            "60",
            "-o",
            "json",
        )
    finally:
        answer.join(30)
    assert done.exit_code == 0, done.output
    action = json.loads(done.stdout)
    assert action["done"] and action["deliveries"][0]["state"] == "succeeded"
    assert action["params"]["event_ids"] == [event["id"]]

    listed = run_cli("forensics", "list", "--event", event["id"], "-o", "json")
    (bundle,) = json.loads(listed.stdout)
    assert (bundle["agent_id"], bundle["size"]) == (agent.agent_id, len(content))
    assert run_cli("forensics", "list", "-q").stdout == f"{bundle['id']}\n"
    shown = json.loads(run_cli("events", "show", event["id"], "-o", "json").stdout)
    assert [ref["id"] for ref in shown["forensics"]] == [bundle["id"]]
    assert f"{bundle['id']} (" in run_cli("events", "show", event["id"]).stdout

    tmp_path = tmp_path / "downloads"
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    saved = run_cli("forensics", "get", bundle["id"], "-o", "json")
    assert saved.exit_code == 0, saved.output
    default = tmp_path / f"{event['id']}.json.gz"
    assert json.loads(saved.stdout) == {
        "id": bundle["id"],
        "file": default.name,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    assert default.read_bytes() == content
    again = run_cli("forensics", "get", bundle["id"])
    assert again.exit_code == 2 and "already exists" in again.stderr
    named = run_cli("forensics", "get", bundle["id"], "-O", str(tmp_path / "copy.gz"))
    assert named.exit_code == 0 and (tmp_path / "copy.gz").read_bytes() == content
    piped = run_cli("forensics", "get", bundle["id"], "-O", "-")
    assert piped.stdout_bytes == content
    assert sorted(os.listdir(tmp_path)) == sorted(["copy.gz", default.name])  # no partial files

    unwritable = run_cli("forensics", "get", bundle["id"], "-O", str(tmp_path / "no" / "x.gz"))
    assert unwritable.exit_code == 1 and "No such file or directory" in unwritable.stderr
    assert "unexpected" not in unwritable.stderr and unwritable.stderr.count("\n") == 1
    missing = run_cli("forensics", "get", "0" * 32, "-O", str(tmp_path / "none.gz"))
    assert missing.exit_code == 5 and not (tmp_path / "none.gz").exists()
    deleted = run_cli("forensics", "delete", bundle["id"], "-o", "json")
    assert deleted.exit_code == 0 and json.loads(deleted.stdout)["id"] == bundle["id"]
    assert run_cli("forensics", "show", bundle["id"]).exit_code == 5
    bad = run_cli("forensics", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "neither a duration" in bad.stderr

"""Hash intelligence: feed imports, precedence admin > feed > agent, sightings, on both
databases, through the real admin client and the agents' check-in policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body, new_event

from trapsapi.errors import ApiError, NotFound

A, B, C, D = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)


class Probe:
    """An enrolled agent that checks in to read the policy agents are sent."""

    def __init__(self, esm: Esm) -> None:
        self.esm = esm
        self.agent: Any = None

    def policy(self) -> dict[str, Any]:
        self.agent = self.agent or self.esm.enroll("probe")
        policy: dict[str, Any] = self.agent.checkin(checkin_body(hostname="probe"))["policy"]
        return policy


@pytest.fixture
def probe(esm: Esm) -> Probe:
    return Probe(esm)


def _entries(*hashes: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"sha256": h, **extra} for h in hashes]


def test_import_counts_and_the_policy_agents_enforce(esm: Esm, probe: Probe) -> None:
    version = probe.policy()["version"]
    first = esm.admin.import_hashes("abuse", _entries(A, B))
    assert (first["received"], first["inserted"], first["updated"]) == (2, 2, 0)
    policy = probe.policy()
    assert policy["version"] > version
    assert {A, B} <= set(policy["blocked_hashes"])
    again = esm.admin.import_hashes("abuse", _entries(A, B))
    assert (again["inserted"], again["updated"], again["unchanged"]) == (0, 0, 2)
    assert probe.policy()["version"] == policy["version"]  # nothing agents enforce moved
    changed = esm.admin.import_hashes("abuse", [{"sha256": B, "verdict": "benign"}])
    assert changed["updated"] == 1
    policy = probe.policy()
    assert B in policy["allowed_hashes"] and B not in policy["blocked_hashes"]
    feeds = esm.admin.list_feeds()
    assert [(f["feed"], f["entries"], f["by_verdict"]) for f in feeds] == [
        ("abuse", 2, {"benign": 1, "malware": 1})
    ]
    audited = esm.sql("SELECT target FROM audit_log WHERE action = 'hash.import'").scalars().all()
    assert audited == ["feed:abuse"] * 3


def test_precedence_admin_beats_feed_beats_nothing_and_worst_feed_wins(
    esm: Esm, probe: Probe
) -> None:
    esm.admin.import_hashes("soft", _entries(A), verdict="benign")
    esm.admin.import_hashes("hard", _entries(A), verdict="malware")
    report = esm.admin.hash_report(A)
    assert (report["verdict"], report["source"]) == ("malware", "feed:hard")
    assert [s["source"] for s in report["sources"]] == ["feed:hard", "feed:soft"]
    esm.admin.set_verdict(A, "benign", "our build tool")
    report = esm.admin.hash_report(A)
    assert (report["verdict"], report["source"]) == ("benign", "admin")
    assert A in probe.policy()["allowed_hashes"]
    esm.admin.unset_verdict(A)
    assert A in probe.policy()["blocked_hashes"]
    unknown = esm.admin.hash_report(D)
    assert (unknown["verdict"], unknown["source"], unknown["sources"]) == ("unknown", None, [])


def test_replace_across_chunks_drops_only_what_is_gone(esm: Esm, probe: Probe) -> None:
    esm.admin.import_hashes("list", _entries(A, B, C))
    first = esm.admin.import_hashes("list", _entries(A))
    second = esm.admin.import_hashes("list", _entries(B), replace=True, since=first["server_time"])
    assert second["removed"] == 1  # C: in neither chunk of the new import
    report = esm.admin.hash_report(C)
    assert report["sources"] == []
    assert {A, B} <= set(probe.policy()["blocked_hashes"])
    assert C not in probe.policy()["blocked_hashes"]
    esm.admin.delete_feed("list")
    assert esm.admin.list_feeds() == []
    assert A not in probe.policy()["blocked_hashes"]
    with pytest.raises(NotFound):
        esm.admin.delete_feed("list")


def test_sightings_show_which_agents_ran_a_hash_where(esm: Esm) -> None:
    web = esm.enroll("web-01")
    db = esm.enroll("db-01")
    now = datetime.now(UTC).isoformat()
    web.upload_events([new_event(sha256=A, process_path="/tmp/x", time=now) for _ in range(3)])
    db.upload_events([new_event(sha256=A, process_path="/var/tmp/y", time=now)])
    db.upload_events([new_event(sha256=B, process_path="/var/tmp/z", time=now)])
    sightings = esm.admin.hash_report(A)["sightings"]
    seen = sorted((s["hostname"], s["process_path"], s["events"]) for s in sightings)
    assert seen == [("db-01", "/var/tmp/y", 1), ("web-01", "/tmp/x", 3)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"feed": "Bad Name", "entries": []}, "feed"),
        ({"feed": "ok", "entries": [{"sha256": "xyz"}]}, "entries.0.sha256"),
        ({"feed": "ok", "entries": [{"sha256": A, "verdict": "evil"}]}, "entries.0.verdict"),
        ({"feed": "ok", "entries": [], "extra": 1}, "extra"),
    ],
)
def test_bad_imports_are_one_line_422s_that_change_nothing(
    esm: Esm, body: dict[str, Any], message: str
) -> None:
    before = esm.sql("SELECT count(*) FROM hash_intel").scalar_one()
    reply = esm.raw("POST", "/api/v1/hash-feeds/import", body, esm.admin_header())
    assert reply.status == 422
    assert message in reply.detail and "\n" not in reply.detail
    assert esm.sql("SELECT count(*) FROM hash_intel").scalar_one() == before


def test_only_hash_writers_import(esm: Esm) -> None:
    analyst = esm.user("analyst")
    with pytest.raises(ApiError) as refused:
        analyst.import_hashes("x", _entries(A))
    assert refused.value.status == 403
    assert analyst.hash_report(A)["verdict"] == "unknown"


def test_agents_query_verdicts_and_their_analysis_is_never_enforced(esm: Esm, probe: Probe) -> None:
    esm.admin.import_hashes("intel", _entries(A))
    esm.admin.set_verdict(B, "benign")
    web = esm.enroll("web-01")
    reply = web.verdicts({"sha256s": [A, B, C], "reports": []})
    assert reply["verdicts"] == {A: "malware", B: "benign", C: "unknown"}
    assert reply["ttl_s"] > 0
    # An agent's own analysis: stored for admins, the most severe report wins, but agents
    # (including the reporting one) are never sent it as a fleet-wide verdict.
    report = {"sha256": C, "verdict": "grayware", "reasons": ["packed (UPX)"]}
    web.verdicts({"sha256s": [], "reports": [report]})
    db = esm.enroll("db-01")
    db.verdicts({"sha256s": [], "reports": [{**report, "verdict": "malware"}]})
    web.verdicts({"sha256s": [], "reports": [{**report, "verdict": "benign"}]})
    shown = esm.admin.hash_report(C)
    assert (shown["verdict"], shown["source"]) == ("malware", "agent")
    assert shown["sources"][0]["comment"].startswith("db-01: packed")
    assert web.verdicts({"sha256s": [C], "reports": []})["verdicts"] == {C: "unknown"}
    assert C not in probe.policy()["blocked_hashes"]
    bad = esm.raw("POST", "/api/v1/agent/verdicts", {"sha256s": ["nope"]}, esm.agent_header(web))
    assert bad.status == 422 and "sha256s.0" in bad.detail

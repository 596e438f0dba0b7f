"""Policies on both databases: resolution order, targets, versions and history, explain,
check-in, drift, atomic apply and one audit record per change."""

from __future__ import annotations

from typing import Any

import pytest
from esmd_harness import Esm, checkin_body

from trapsapi import routes
from trapsapi.errors import ApiError, NotFound


def _policy(name: str, priority: int, include: dict[str, Any], rules: dict[str, Any]) -> Any:
    return {"name": name, "priority": priority, "targets": {"include": include}, "rules": rules}


RANKED = [
    _policy("by-label", 5, {"labels": ["db"]}, {"restrictions": {"mode": "prevention"}}),
    _policy("by-host", 5, {"hostnames": ["web-01"]}, {"restrictions": {"mode": "off"}}),
    _policy(
        "by-glob",
        5,
        {"hostnames": ["web-*"]},
        {"restrictions": {"mode": "notification"}, "child_process": {"mode": "notification"}},
    ),
    _policy("by-os", 9, {"os": ["linux"]}, {"malware": {"user_alert": False}}),
    _policy("beta", 3, {"labels": ["db"]}, {"forensics": {"quota_mb": 2}}),
    _policy("alpha", 3, {"labels": ["db"]}, {"forensics": {"quota_mb": 1}}),
]


def _winners(explained: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {s["setting"]: (s["policy"], s["value"]) for s in explained["settings"]}


def test_priority_then_specificity_then_name_never_insertion_order(esm: Esm) -> None:
    agent = esm.enroll("web-01")
    esm.admin.set_agent_labels(agent.agent_id, ["db"])
    esm.admin.apply_policies({"policies": RANKED})
    first = esm.admin.explain_agent_policy(agent.agent_id)
    for policy in RANKED:
        esm.admin.delete_policy(policy["name"])
    for policy in reversed(RANKED):  # one at a time, the other way round
        esm.admin.apply_policies({"policies": [policy]})
    second = esm.admin.explain_agent_policy(agent.agent_id)
    assert _winners(first) == _winners(second)
    assert first["matched"] == second["matched"]

    won = _winners(first)
    assert won["restrictions.mode"] == ("by-host", "off")  # exact host > glob > label
    assert won["child_process.mode"] == ("by-glob", "notification")  # beats default (prio 0)
    assert won["malware.user_alert"] == ("by-os", False)  # priority 9 beats all
    assert won["forensics.quota_mb"] == ("alpha", 1)  # same priority and specificity: name
    assert won["malware.mode"] == ("default", "prevention")
    assert [m["name"] for m in first["matched"]] == [
        "by-os",
        "by-host",
        "by-glob",
        "by-label",
        "alpha",
        "beta",
        "default",
    ]
    setting = next(s for s in first["settings"] if s["setting"] == "restrictions.mode")
    assert "hostname 'web-01'" in setting["reason"]
    losers = {x["policy"]: x["reason"] for x in setting["losers"]}
    assert set(losers) == {"by-glob", "by-label", "default"}
    assert "more specific than hostname glob 'web-*'" in losers["by-glob"]
    assert losers["default"] == "priority 5 > 0"
    # The check-in carries the same effective policy.
    reply = agent.checkin(checkin_body(hostname="web-01"))
    assert reply["policy"] == first["effective"] | {"version": reply["policy"]["version"]}
    assert reply["policy"]["modules"]["restrictions"]["enabled"] is False
    assert reply["policy"]["forensics"]["quota_mb"] == 1


def test_include_exclude_groups_globs_and_disabled(esm: Esm) -> None:
    agent = esm.enroll("WEB-02.example")
    esm.admin.apply_policies(
        {
            "policies": [
                {
                    "name": "web",
                    "priority": 1,
                    "targets": {
                        "include": {"hostnames": ["web-*.example"]},
                        "exclude": {"labels": ["canary"]},
                    },
                    "rules": {"agent": {"console": "hidden"}},
                },
                _policy("dc1", 2, {"groups": ["dc1"]}, {"agent": {"log_quota_mb": 7}}),
                {**_policy("off", 99, {"all": True}, {"agent": {"log_quota_mb": 1}})}
                | {"enabled": False},
            ]
        }
    )
    explained = esm.admin.explain_agent_policy(agent.agent_id)
    assert [m["name"] for m in explained["matched"]] == ["web", "default"], explained["skipped"]
    assert explained["matched"][0]["specificity"] == "hostname_glob"  # case-insensitive
    skipped = {s["name"]: s["reason"] for s in explained["skipped"]}
    assert skipped == {"dc1": "no include target matches", "off": "disabled"}
    assert _winners(explained)["agent.console"] == ("web", "hidden")
    body = checkin_body(hostname="WEB-02.example")
    version = agent.checkin(body)["policy"]["version"]
    assert agent.checkin(body)["policy"]["agent"]["console"] == "hidden"

    esm.admin.set_agent_labels(agent.agent_id, ["canary"])
    # Same version, new labels: the next check-in already gets the other policy.
    after = agent.checkin(body)["policy"]
    assert (after["version"], after["agent"]["console"]) == (version, "visible")
    esm.admin.set_agent_group(agent.agent_id, "dc1")
    explained = esm.admin.explain_agent_policy(agent.agent_id)
    assert explained["labels"] == ["canary"] and explained["group"] == "dc1"
    skipped = {s["name"]: s["reason"] for s in explained["skipped"]}
    assert skipped["web"] == "label 'canary' is excluded"
    assert _winners(explained)["agent.log_quota_mb"] == ("dc1", 7)
    assert _winners(explained)["agent.console"] == ("default", "visible")
    shown = esm.admin.get_agent(agent.agent_id)
    assert (shown["labels"], shown["group"]) == (["canary"], "dc1")
    with pytest.raises(NotFound):
        esm.admin.explain_agent_policy("00000000-0000-4000-8000-000000000000")


def test_versions_history_and_one_audit_record_per_change(esm: Esm) -> None:
    version = lambda: esm.sql("SELECT version FROM policy_state").scalar_one()  # noqa: E731
    start = version()
    audits = lambda: esm.count("audit_log")  # noqa: E731
    before_audits = audits()
    three = [_policy(n, 1, {"labels": [n]}, {"agent": {"log_quota_mb": 5}}) for n in "abc"]
    result = esm.admin.apply_policies({"policies": three})
    assert result["version"] == start + 1 == version()
    assert [c["action"] for c in result["changes"]] == ["created"] * 3
    assert audits() == before_audits + 1  # one apply, one record
    again = esm.admin.apply_policies({"policies": three})
    assert again["version"] == start + 1  # nothing changed: no new version
    assert {c["action"] for c in again["changes"]} == {"unchanged"}
    three[1]["rules"]["agent"]["log_quota_mb"] = 6
    updated = esm.admin.apply_policies({"policies": three})
    assert updated["version"] == start + 2
    assert [c["action"] for c in updated["changes"]] == ["unchanged", "updated", "unchanged"]
    esm.admin.set_verdict("a" * 64, "malware")  # verdicts still make versions
    assert version() == start + 3
    esm.admin.delete_policy("a")
    assert version() == start + 4

    history = esm.admin.policy_history()["data"]
    assert [h["version"] for h in history] == [start + 4, start + 3, start + 2, start + 1, start]
    latest = history[0]
    assert (latest["action"], latest["policy"], latest["actor"]) == ("delete", "a", "admin")
    assert sorted(p["name"] for p in latest["snapshot"]) == ["b", "c", "default"]
    assert (history[1]["action"], history[1]["policy"]) == ("hash.set", "")
    assert history[2]["changes"] == {"a": "unchanged", "b": "updated", "c": "unchanged"}
    assert history[-1]["action"] == "init"
    only_b = esm.admin.policy_history(policy="b")["data"]
    assert [h["version"] for h in only_b] == [start + 2, start + 1]
    actions = [
        r[0]
        for r in esm.sql(
            "SELECT action FROM audit_log WHERE action LIKE 'policy.%' ORDER BY id"
        ).all()
    ]
    assert actions == ["policy.apply"] * 3 + ["policy.delete"]
    with pytest.raises(NotFound):
        esm.admin.delete_policy("a")


def test_every_version_agents_receive_has_a_history_row_verdict_changes_too(esm: Esm) -> None:
    """Admin overrides and feed imports bump the version agents pull: each bump is recorded."""
    version = lambda: esm.sql("SELECT version FROM policy_state").scalar_one()  # noqa: E731
    start = version()
    sha, other = "b" * 64, "c" * 64
    esm.admin.set_verdict(sha, "malware")
    esm.admin.set_verdict(sha, "malware", comment="same verdict")  # no change: no version
    esm.admin.set_verdict(sha, "benign")
    esm.admin.unset_verdict(sha)
    esm.admin.import_hashes("intel", [{"sha256": other}])
    esm.admin.import_hashes("intel", [{"sha256": other}])  # unchanged: no version
    esm.admin.delete_feed("intel")
    assert version() == start + 5

    history = esm.admin.policy_history()["data"]
    oldest = history[-1]["version"]
    assert [h["version"] for h in history] == list(range(version(), oldest - 1, -1))  # no gaps
    newest = [(h["action"], h["policy"], h["changes"]) for h in reversed(history[:5])]
    assert newest == [
        ("hash.set", "", {"sha256": sha, "verdict": "malware", "previous": None}),
        ("hash.set", "", {"sha256": sha, "verdict": "benign", "previous": "malware"}),
        ("hash.unset", "", {"sha256": sha, "previous": "benign"}),
        (
            "hash.import",
            "",
            {"feed": "intel", "received": 1, "inserted": 1, "updated": 0, "unchanged": 0,
             "removed": 0},
        ),
        ("hash.feed.delete", "", {"feed": "intel", "removed": 1}),
    ]  # fmt: skip
    assert {h["actor"] for h in history[:5]} == {"admin"}
    assert [p["name"] for p in history[0]["snapshot"]] == ["default"]
    assert esm.admin.policy_history(policy="default")["data"][0]["action"] == "init"
    agent = esm.enroll("web-history")
    assert agent.checkin(checkin_body(hostname="web-history"))["policy"]["version"] == version()


def test_checkin_drift_and_degraded_health(esm: Esm) -> None:
    agent = esm.enroll("db-07")
    first = agent.checkin(checkin_body(hostname="db-07"))["policy"]
    shown = esm.admin.get_agent(agent.agent_id)
    assert (shown["policy_drift"], shown["health"]) == (False, "connected")  # nothing sent yet
    # It applied what it was sent: no drift.
    agent.checkin(checkin_body(hostname="db-07", policy_version=first["version"]))
    shown = esm.admin.get_agent(agent.agent_id)
    assert (shown["policy_drift"], shown["expected_policy_version"]) == (False, first["version"])
    # It keeps reporting an older version than it was sent: drift, degraded.
    esm.admin.apply_policies(
        {"policies": [_policy("db", 1, {"hostnames": ["db-*"]}, {"restrictions": {"mode": "off"}})]}
    )
    second = agent.checkin(checkin_body(hostname="db-07", policy_version=first["version"]))
    assert second["policy"]["version"] == first["version"] + 1
    assert second["policy"]["modules"]["restrictions"]["enabled"] is False
    agent.checkin(checkin_body(hostname="db-07", policy_version=first["version"]))
    shown = esm.admin.get_agent(agent.agent_id)
    assert shown["policy_drift"] is True and shown["health"] == "degraded"
    assert shown["expected_policy_version"] == first["version"] + 1
    assert esm.admin.list_agents(health="degraded")["count"] == 1
    assert esm.admin.list_agents(health="connected")["count"] == 0
    agent.checkin(checkin_body(hostname="db-07", policy_version=first["version"] + 1))
    assert esm.admin.get_agent(agent.agent_id)["health"] == "connected"


GOOD = _policy("good", 1, {"all": True}, {})
GOLDEN = [
    (
        {"policies": [GOOD, {**GOOD, "name": "bad", "rules": {"child_process": {"mode": "on"}}}]},
        "policies[1].rules.child_process.mode: must be one of prevention, notification, off",
    ),
    (
        {"policies": [{**GOOD, "priority": "high"}]},
        "policies[0].priority: must be an integer",
    ),
    (
        {"policies": [{**GOOD, "rules": {"malware": {"unknown_file": "quarantine"}}}]},
        "policies[0].rules.malware.unknown_file: must be one of allow, notify, block",
    ),
    (
        {"policies": [{**GOOD, "rules": {"restrictions": {"paths": ["tmp"]}}}]},
        "policies[0].rules.restrictions.paths[0]: 'tmp' is not valid here "
        "(expected ^(/|.*[*?\\[]))",
    ),
    (
        {"policies": [{**GOOD, "rulez": {}}]},
        "policies[0].rulez: unknown field",
    ),
    (
        {"policies": [{**GOOD, "targets": {"include": {}}}]},
        "policies[0].targets.include: name at least one target (all, labels, groups, "
        "hostnames or os)",
    ),
    (
        {"policies": [GOOD, GOOD]},
        "policies[1].name: 'good' is already the name of policies[0]",
    ),
    (
        {"policies": [{**GOOD, "rules": {"memfd_noexec": {"mode": "notification"}}}]},
        "policies[0].rules.memfd_noexec.mode: must be one of prevention, off (a kernel switch "
        "cannot notify)",
    ),
    (
        {"policies": [{**GOOD, "rules": {"agent": {"heartbeat_interval_s": 1}}}]},
        "policies[0].rules.agent.heartbeat_interval_s: Input should be greater than or equal to 10",
    ),
    ({"policies": []}, "policies: List should have at least 1 item after validation, not 0"),
    ({"policy": []}, "policies: required (and 1 more problem)"),
    ([GOOD], "a policy file must be a mapping with a 'policies' list"),
]


@pytest.mark.parametrize(("body", "detail"), GOLDEN, ids=range(len(GOLDEN)))
def test_validation_errors_name_the_field_and_change_nothing(
    esm: Esm, body: Any, detail: str
) -> None:
    before = esm.snapshot()
    reply = esm.raw("POST", routes.POLICIES, body, esm.admin_header())
    assert (reply.status, reply.detail) == (422, detail)
    assert esm.snapshot() == before


def test_apply_is_all_or_nothing_and_passwords_are_hashed(esm: Esm) -> None:
    esm.admin.apply_policies({"policies": [GOOD]})
    before = esm.snapshot()
    state = esm.sql("SELECT version FROM policy_state").scalar_one()
    bad = {**GOOD, "name": "second", "rules": {"agent": {"console": "invisible"}}}
    changed_good = {**GOOD, "priority": 50}
    with pytest.raises(ApiError, match=r"policies\[1\].rules.agent.console"):
        esm.admin.apply_policies({"policies": [changed_good, bad]})
    assert esm.snapshot() == before
    assert esm.sql("SELECT version FROM policy_state").scalar_one() == state
    assert esm.admin.get_policy("good")["priority"] == 1

    secret = {**GOOD, "rules": {"agent": {"uninstall_password": "s3cret-stop-word"}}}
    esm.admin.apply_policies({"policies": [secret]})
    stored = esm.admin.get_policy("good")["rules"]["agent"]
    assert "uninstall_password" not in stored
    assert stored["uninstall_password_hash"].startswith("pbkdf2-sha256$")
    assert "s3cret" not in str(esm.sql("SELECT rules FROM policies").all())
    assert "s3cret" not in str(esm.sql("SELECT detail FROM audit_log").all())
    # The same file again is unchanged (the stored hash verifies the plain password).
    again = esm.admin.apply_policies({"policies": [secret]})
    assert again["changes"][0]["action"] == "unchanged"
    dry = esm.admin.apply_policies({"policies": [changed_good]}, dry_run=True)
    assert dry["dry_run"] is True and dry["changes"][0]["action"] == "updated"
    assert esm.admin.get_policy("good")["priority"] == 1  # a dry run writes nothing


def test_viewers_read_and_explain_but_only_policy_writers_change(esm: Esm) -> None:
    agent = esm.enroll("web-09")
    viewer = esm.user("viewer")
    analyst = esm.user("analyst")
    writer = esm.user("security_admin")
    assert [p["name"] for p in viewer.list_policies()["data"]] == ["default"]
    assert viewer.explain_agent_policy(agent.agent_id)["matched"][0]["name"] == "default"
    body = {"policies": [GOOD]}
    for client in (viewer, analyst):
        with pytest.raises(ApiError, match="policies:write"):
            client.apply_policies(body)
        with pytest.raises(ApiError, match="policies:write"):
            client.set_agent_labels(agent.agent_id, ["x"])
        with pytest.raises(ApiError, match="policies:write"):
            client.delete_policy("default")
    tables = ("policies", "policy_history", "audit_log")
    counts = lambda: [esm.sql(f"SELECT COUNT(*) FROM {t}").scalar_one() for t in tables]  # noqa: E731
    before = counts()
    for client in (viewer, analyst):  # a diff needs only read permission, and writes nothing
        diff = client.diff_policies(body)
        assert (diff["dry_run"], diff["changes"][0]["action"]) == (True, "created")
        with pytest.raises(ApiError, match="policies:write"):
            client.apply_policies(body, dry_run=True)  # apply's dry run is for appliers
    assert counts() == before
    assert writer.apply_policies(body)["changes"][0]["action"] == "created"
    assert viewer.diff_policies(body)["changes"][0]["action"] == "unchanged"
    assert writer.set_agent_group(agent.agent_id, "dc2")["group"] == "dc2"
    audit = esm.sql(
        "SELECT actor, action FROM audit_log WHERE action LIKE 'policy.%' OR "
        "action LIKE 'agent.set%' ORDER BY id"
    ).all()
    assert [tuple(r) for r in audit] == [
        (writer.whoami()["username"], "policy.apply"),
        (writer.whoami()["username"], "agent.set_group"),
    ]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def test_the_policy_file_body_is_documented_in_openapi(esm: Esm) -> None:
    spec = esm.raw("GET", "/openapi.json").json
    schemas = spec["components"]["schemas"]
    for path in (routes.POLICIES, routes.POLICY_DIFF):
        body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"] == "#/components/schemas/PolicyFile", path
        example = body["example"]
        # The documented example is a valid policy file: the diff accepts it as it stands.
        diff = esm.user("viewer").diff_policies(example)
        assert [c["name"] for c in diff["changes"]] == ["web-servers"]
    policy_file = schemas["PolicyFile"]
    assert policy_file["required"] == ["policies"]
    assert policy_file["properties"]["policies"]["items"]["$ref"].endswith("/PolicySpec")
    assert "targets" in schemas["PolicySpec"]["required"]
    prefix = "#/components/schemas/"
    dangling = {r for r in _refs(spec) if r.removeprefix(prefix) not in schemas}
    assert dangling == set()


def test_only_the_history_bumps_the_version_agents_pull() -> None:
    """Every bump has its history row: nothing but record_version calls bump_version."""
    from pathlib import Path

    import esmd

    allowed = {"services/policy.py", "services/policy_history.py"}
    root = Path(esmd.__file__).parent
    callers = {
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if "bump_version(" in path.read_text(encoding="utf-8")
    }
    assert callers == allowed

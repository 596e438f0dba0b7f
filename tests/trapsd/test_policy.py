from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agent_helpers import policy_for

from trapsd.exec_rules import ALLOW, DENY, NOTIFY, action_for, decide
from trapsd.policy import PolicyError, compile_policy, default_policy, load_policy, save_policy

EVIL, GOOD = "e" * 64, "0" * 64


def test_blocked_hash_is_denied_in_prevention_and_reported_in_notification() -> None:
    digest = bytes.fromhex(EVIL)
    assert decide(policy_for([EVIL]), digest) == DENY
    assert decide(policy_for([EVIL], mode="notification"), digest) == NOTIFY
    assert decide(policy_for([EVIL]), bytes.fromhex(GOOD)) == ALLOW


def test_allow_list_beats_block_list_and_off_allows_everything() -> None:
    digest = bytes.fromhex(EVIL)
    assert decide(policy_for([EVIL], allowed=[EVIL]), digest) == ALLOW
    assert decide(policy_for([EVIL], mode="off"), digest) == ALLOW
    assert decide(policy_for([EVIL], enabled=False), digest) == ALLOW


def test_upper_case_hashes_match() -> None:
    assert decide(policy_for([EVIL.upper()]), bytes.fromhex(EVIL)) == DENY


def test_actions() -> None:
    assert action_for(DENY, can_block=True) == "prevented"
    assert action_for(DENY, can_block=False) == "killed"
    assert action_for(NOTIFY, can_block=True) == "notified"


def test_default_policy_prevents_but_blocks_nothing_yet() -> None:
    policy = default_policy()
    assert policy.version is None and policy.heartbeat_interval_s == 3600
    assert policy.malware.active and not policy.blocked


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ({"blocked_hashes": ["abc"]}, "blocked_hashes holds 'abc'"),
        ({"allowed_hashes": "x"}, "allowed_hashes must be a list"),
        ({"version": "3"}, "version must be an integer"),
        ({"heartbeat_interval_s": -1}, "heartbeat_interval_s"),
        ({"modules": {"malware": {"mode": "panic"}}}, "unknown mode 'panic'"),
        ({"modules": []}, "modules must be an object"),
    ],
)
def test_a_malformed_policy_is_rejected_whole(wire: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        compile_policy(wire)


def test_policy_survives_a_restart(tmp_path: Path) -> None:
    assert load_policy(tmp_path) is None
    wire = dict(policy_for([EVIL], version=7).wire or {})
    save_policy(tmp_path, wire)
    loaded = load_policy(tmp_path)
    assert loaded is not None and loaded.version == 7
    assert loaded.blocked == frozenset({bytes.fromhex(EVIL)})
    assert (tmp_path / "policy.json").stat().st_mode & 0o777 == 0o600

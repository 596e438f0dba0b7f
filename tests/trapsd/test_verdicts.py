"""The malware precedence of the agent (policy lists > learnt verdicts > unknown-file
action) and the analyst that learns verdicts from the ESM and from local analysis."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

from agent_helpers import policy_for

from trapsapi.errors import Unreachable
from trapsapi.wire import AgentVerdictQuery, AgentVerdicts
from trapsd.exec_rules import ALLOW, DENY, NOTIFY
from trapsd.verdicts import LOCAL, SERVER, Verdicts

A, B, C = bytes([0xAA]) * 32, bytes([0xBB]) * 32, bytes([0xCC]) * 32


class FakeEsm:
    """Answers verdict queries from a table, or fails like an unreachable ESM."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table
        self.down = False
        self.queries: list[AgentVerdictQuery] = []

    def __call__(self, query: AgentVerdictQuery) -> AgentVerdicts:
        self.queries.append(query)
        if self.down:
            raise Unreachable("no ESM answered")
        verdicts = {sha: self.table.get(sha, "unknown") for sha in query["sha256s"]}
        return {"verdicts": verdicts, "ttl_s": 3600}


def test_policy_lists_win_then_learnt_verdicts_then_the_unknown_action() -> None:
    esm = FakeEsm({C.hex(): "malware", B.hex(): "malware"})
    verdicts = Verdicts(esm)
    policy = policy_for(blocked=[A.hex()], allowed=[B.hex()])
    assert verdicts.judge(policy, A) == DENY  # blocked by the policy
    assert verdicts.judge(policy, B) == ALLOW  # allowed by the policy beats the ESM's answer
    assert verdicts.judge(policy, C, "/nowhere") == ALLOW  # unknown yet: allowed, queued
    assert not verdicts.settled(C)  # so its file gets no ignore mark
    verdicts.process([(C, "/nowhere")])
    assert verdicts.lookup(C) == ("malware", SERVER) and verdicts.settled(C)
    assert verdicts.judge(policy, C) == DENY  # learnt: the next execution is stopped
    notify = policy_for(blocked=[A.hex()], mode="notification")
    assert verdicts.judge(notify, C) == NOTIFY
    assert verdicts.judge(policy_for(enabled=False), C) == ALLOW
    assert esm.queries[0]["sha256s"] == [C.hex()]


def test_unknown_to_the_esm_is_remembered_and_not_asked_again_each_time() -> None:
    esm = FakeEsm({})
    verdicts = Verdicts(esm)
    policy = policy_for()
    verdicts.judge(policy, C, "/nowhere")
    verdicts.judge(policy, C, "/nowhere")  # queued once
    verdicts.process([(C, "/nowhere")])
    assert verdicts.lookup(C) == ("unknown", SERVER)
    assert verdicts.judge(policy, C) == ALLOW
    assert len(esm.queries) == 1 and verdicts.snapshot()["queried"] == 1


def _packed(directory: Path) -> tuple[Path, bytes]:
    import hashlib

    data = bytearray(Path(shutil.which("true") or "/bin/true").read_bytes())
    data[0x200:0x204] = b"UPX!"
    struct.pack_into("<Q", data, 0x28, 0)  # no section headers
    path = directory / "payload"
    path.write_bytes(bytes(data))
    path.chmod(0o755)
    return path, hashlib.sha256(bytes(data)).digest()


def test_offline_the_agents_own_analysis_decides_and_is_reported(tmp_path: Path) -> None:
    shared = tmp_path / "shm"
    shared.mkdir()
    shared.chmod(0o1777)
    path, digest = _packed(shared)
    esm = FakeEsm({})
    esm.down = True
    verdicts = Verdicts(esm)
    policy = policy_for()
    assert verdicts.judge(policy, digest, str(path)) == ALLOW
    verdicts.process([(digest, str(path))])
    assert not verdicts.online
    assert verdicts.lookup(digest) == ("malware", LOCAL)
    assert verdicts.judge(policy, digest, str(path)) == DENY
    assert not verdicts.settled(digest)  # a local verdict is re-checked, never marked
    report: Any = esm.queries[0]["reports"][0]
    assert report["sha256"] == digest.hex() and report["verdict"] == "malware"
    assert "packed (UPX signature)" in report["reasons"]


def test_a_file_replaced_since_its_execution_is_not_analysed(tmp_path: Path) -> None:
    path, digest = _packed(tmp_path)
    path.write_bytes(b"\x7fELF something else")
    verdicts = Verdicts(FakeEsm({}))
    verdicts.process([(digest, str(path))])
    assert verdicts.lookup(digest) == ("unknown", SERVER)
    assert verdicts.snapshot()["analysed"] == 0

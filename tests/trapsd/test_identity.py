from __future__ import annotations

import os
from pathlib import Path

import pytest

from trapsapi.errors import TrapsError, UsageError
from trapsd.files import ensure_private_dir, read_json, write_json
from trapsd.identity import (
    Identity,
    NotEnrolled,
    load_identity,
    merge_servers,
    parse_servers,
    save_identity,
)


def test_identity_is_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    save_identity(state, Identity("a-1", "s3cret", ["http://esm:2125"], "2026-01-01"))
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "identity.json").stat().st_mode & 0o777 == 0o600
    loaded = load_identity(state)
    assert (loaded.agent_id, loaded.agent_secret, loaded.servers) == (
        "a-1",
        "s3cret",
        ["http://esm:2125"],
    )
    assert "s3cret" not in repr(loaded)
    assert not [p for p in state.iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_loose_state_dir_is_tightened(tmp_path: Path) -> None:
    state = tmp_path / "loose"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    ensure_private_dir(state)
    assert state.stat().st_mode & 0o777 == 0o700


def test_not_enrolled_and_broken_identity(tmp_path: Path) -> None:
    with pytest.raises(NotEnrolled, match="run `trapsd enroll` first"):
        load_identity(tmp_path)
    (tmp_path / "identity.json").write_text("{")
    with pytest.raises(TrapsError, match="not valid JSON"):
        load_identity(tmp_path)
    write_json(tmp_path / "identity.json", {"agent_id": "x"})
    with pytest.raises(TrapsError, match="not a trapsd identity file"):
        load_identity(tmp_path)


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    write_json(path, {"n": 1})
    write_json(path, {"n": 2})
    assert read_json(path) == {"n": 2}
    assert read_json(tmp_path / "missing.json") is None


def test_server_lists() -> None:
    assert parse_servers("http://a:1, http://b:2/,http://a:1") == ["http://a:1", "http://b:2"]
    assert merge_servers(["http://a:1"], ["http://b:2", "http://a:1/"]) == [
        "http://a:1",
        "http://b:2",
    ]
    with pytest.raises(UsageError, match="invalid server URL"):
        parse_servers("ftp://x")
    with pytest.raises(UsageError, match="at least one URL"):
        parse_servers(" , ")

"""``trapsctl hashes import|feeds|delete-feed|report`` and the hash-list reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ctl_helpers import run_cli

from trapsapi.admin_client import AdminClient
from trapsapi.errors import ExitCode, UsageError
from trapsctl.commands import hashes
from trapsctl.hashfile import parse_hash_list

A, B, C = "a" * 64, "B" * 64, "c" * 64


def test_plain_lists_and_sha256sum_output() -> None:
    text = f"# feed of the day\n\n{A}\n{B}  /usr/bin/evil\n{C} *dropper.bin\n"
    assert parse_hash_list(text, "list.txt") == [
        {"sha256": A, "comment": ""},
        {"sha256": B.lower(), "comment": "/usr/bin/evil"},
        {"sha256": C, "comment": "dropper.bin"},
    ]


def test_csv_by_header_names_and_by_position() -> None:
    named = f"name,SHA256,verdict\nloader,{A},grayware\nbuild tool,{C},\n"
    assert parse_hash_list(named, "f.csv") == [
        {"sha256": A, "comment": "loader", "verdict": "grayware"},
        {"sha256": C, "comment": "build tool"},
    ]
    positional = f'{A},malware,"dropper, stage 2"\n'
    assert parse_hash_list(positional, "f.csv") == [
        {"sha256": A, "verdict": "malware", "comment": "dropper, stage 2"}
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("# only comments\n", "f: no SHA-256 found"),
        (f"{A}\nnot-a-hash\n", "f:2: 'not-a-hash' is not a SHA-256"),
        (f"hash,verdict\n{A},evil\n", "f:2: verdict 'evil' is not one of"),
        (f"md5,verdict\n{A},malware\n", "f:1: no sha256 column"),
        ("sha256,verdict\n", "f: no SHA-256 found"),
    ],
)
def test_bad_lists_name_the_line(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_hash_list(text, "f")
    assert message in str(error.value)


@pytest.fixture
def as_admin(admin: AdminClient, monkeypatch: pytest.MonkeyPatch) -> AdminClient:
    monkeypatch.setenv("TRAPSCTL_SERVER", admin.server)
    monkeypatch.setenv("TRAPSCTL_TOKEN", admin.token or "")
    return admin


def _json(*args: str) -> Any:
    result = run_cli(*args, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_import_in_chunks_with_replace(
    as_admin: AdminClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hashes, "IMPORT_CHUNK", 2)  # three requests for five hashes
    many = [f"{i:064x}" for i in range(5)]
    feed = tmp_path / "feed.txt"
    feed.write_text("\n".join(many) + "\n")
    first = _json("hashes", "import", str(feed), "--feed", "intel")
    assert (first["received"], first["inserted"]) == (5, 5)
    feed.write_text("\n".join(many[:3]) + "\n")
    second = _json("hashes", "import", str(feed), "--feed", "intel", "--replace")
    assert (second["unchanged"], second["removed"]) == (3, 2)
    assert [(f["feed"], f["entries"]) for f in _json("hashes", "feeds")] == [("intel", 3)]
    report = _json("hashes", "show", many[0])
    assert (report["verdict"], report["source"]) == ("malware", "feed:intel")
    table = run_cli("hashes", "show", many[0])
    assert "feed:intel=malware" in table.stdout
    deleted = run_cli("hashes", "delete-feed", "intel")
    assert deleted.exit_code == 0 and "intel" in deleted.stderr
    assert _json("hashes", "feeds") == []


def test_a_bad_file_is_a_usage_error_and_sends_nothing(
    as_admin: AdminClient, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text(f"{A}\n{A[:-1]}\n")
    result = run_cli("hashes", "import", str(feed), "--feed", "intel")
    assert result.exit_code == ExitCode.USAGE
    assert f"{feed}:2:" in result.stderr and "Traceback" not in result.output
    assert as_admin.list_feeds() == []

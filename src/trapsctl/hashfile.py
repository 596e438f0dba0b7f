"""Reading threat-intel hash lists: plain lists (``sha256sum`` output too) and CSV files.

Plain: one SHA-256 per line, optionally followed by text that becomes the comment (the file
name of ``sha256sum`` output); blank lines and ``#`` comments are skipped. CSV: detected by a
comma on the first data line; with a header the columns ``sha256``/``hash``, ``verdict`` and
``comment``/``description``/``name`` are used by name, without one they are read in that order.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from trapsapi.enums import Verdict
from trapsapi.errors import UsageError

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_HASH_COLUMNS = ("sha256", "hash", "sha-256", "sha_256")
_COMMENT_COLUMNS = ("comment", "description", "name", "filename", "file_name")
MAX_COMMENT = 1024


def _sha(value: str, where: str) -> str:
    value = value.strip()
    if not _SHA256.fullmatch(value):
        raise UsageError(f"{where}: {value[:80]!r} is not a SHA-256 (64 hexadecimal characters)")
    return value.lower()


def _verdict(value: str, where: str) -> str | None:
    value = value.strip().lower()
    if not value:
        return None
    try:
        return Verdict(value).value
    except ValueError:
        choices = ", ".join(v.value for v in Verdict)
        raise UsageError(f"{where}: verdict {value!r} is not one of {choices}") from None


def _entry(sha: str, verdict: str | None, comment: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"sha256": sha, "comment": comment.strip()[:MAX_COMMENT]}
    if verdict is not None:
        entry["verdict"] = verdict
    return entry


def _data_lines(text: str) -> list[tuple[int, str]]:
    return [
        (number, line)
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def parse_hash_list(text: str, name: str) -> list[dict[str, Any]]:
    """The entries of a hash list; a bad line raises UsageError naming ``name:LINE``."""
    lines = _data_lines(text)
    if not lines:
        raise UsageError(f"{name}: no SHA-256 found")
    if "," in lines[0][1]:
        return _parse_csv(lines, name)
    entries = []
    for number, line in lines:
        sha, _, rest = line.strip().partition(" ")
        entries.append(_entry(_sha(sha, f"{name}:{number}"), None, rest.strip().lstrip("*")))
    return entries


def _parse_csv(lines: list[tuple[int, str]], name: str) -> list[dict[str, Any]]:
    rows = list(csv.reader(io.StringIO("\n".join(line for _, line in lines))))
    numbers = [number for number, _ in lines]
    header = [cell.strip().lower() for cell in rows[0]]
    if not _SHA256.fullmatch(rows[0][0].strip()):
        column = next((header.index(c) for c in _HASH_COLUMNS if c in header), None)
        if column is None:
            raise UsageError(f"{name}:{numbers[0]}: no sha256 column in the CSV header")
        verdict = header.index("verdict") if "verdict" in header else None
        comment = next((header.index(c) for c in _COMMENT_COLUMNS if c in header), None)
        rows, numbers = rows[1:], numbers[1:]
    else:
        column, verdict, comment = 0, 1, 2
    entries = []
    for number, row in zip(numbers, rows, strict=True):
        where = f"{name}:{number}"

        def cell(index: int | None, row: list[str] = row) -> str:
            return row[index] if index is not None and index < len(row) else ""

        entries.append(
            _entry(_sha(cell(column), where), _verdict(cell(verdict), where), cell(comment))
        )
    if not entries:
        raise UsageError(f"{name}: no SHA-256 found")
    return entries

"""The quarantine: offending files moved into ``state_dir/quarantine`` (0700, root only).

Each entry is ``<id>.bin`` (the content, 0600, never executable) and ``<id>.json`` (original
path, mode, owner, mtime, sha256, size, time, reason). A quarantined hash is also blocked
locally (``local_blocks.json``, merged into every applied policy) until it is restored.
The content is copied and then the original unlinked, so the quarantine works across
filesystems; a restore refuses to replace a file that now exists at the original path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Any

from trapsapi.errors import TrapsError
from trapsd.files import ensure_private_dir, read_json, write_json

QUARANTINE_DIR = "quarantine"
LOCAL_BLOCKS = "local_blocks.json"
_ID = re.compile(r"^[0-9a-f]{32}$")
CHUNK = 1024 * 1024


class QuarantineError(TrapsError):
    pass


def quarantine_dir(state_dir: Path) -> Path:
    return state_dir / QUARANTINE_DIR


def local_blocks(state_dir: Path) -> set[str]:
    try:
        value = read_json(state_dir / LOCAL_BLOCKS)
    except TrapsError:
        return set()
    return {str(v) for v in value} if isinstance(value, list) else set()


def _set_local_blocks(state_dir: Path, hashes: set[str]) -> None:
    write_json(state_dir / LOCAL_BLOCKS, sorted(hashes))


def with_local_blocks(policy: Any, state_dir: Path) -> Any:
    """``policy`` (a :class:`trapsd.policy.Policy`) with the quarantined hashes blocked too."""
    extra = {bytes.fromhex(h) for h in local_blocks(state_dir)}
    if not extra or extra <= policy.blocked:
        return policy
    return dataclasses.replace(policy, blocked=policy.blocked | frozenset(extra))


def list_entries(state_dir: Path) -> list[dict[str, Any]]:
    directory = quarantine_dir(state_dir)
    entries = []
    with contextlib.suppress(FileNotFoundError):
        for meta in sorted(directory.glob("*.json")):
            with contextlib.suppress(TrapsError):
                value = read_json(meta)
                if isinstance(value, dict) and _ID.match(str(value.get("id", ""))):
                    entries.append(value)
    return sorted(entries, key=lambda e: str(e.get("time", "")))


def quarantine_file(
    state_dir: Path, path: str, reason: str, expected_sha256: str | None = None
) -> dict[str, Any]:
    """Move the regular file ``path`` into the quarantine; its metadata entry."""
    directory = ensure_private_dir(quarantine_dir(state_dir))
    entry_id = uuid.uuid4().hex
    target = directory / f"{entry_id}.bin"
    try:
        source = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise QuarantineError(f"{path}: {exc.strerror}") from None
    try:
        info = os.fstat(source)
        if not stat.S_ISREG(info.st_mode):
            raise QuarantineError(f"{path}: not a regular file")
        digest = hashlib.sha256()
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while chunk := os.read(source, CHUNK):
                digest.update(chunk)
                os.write(out, chunk)
            os.fsync(out)
        finally:
            os.close(out)
    finally:
        os.close(source)
    sha256 = digest.hexdigest()
    if expected_sha256 and sha256 != expected_sha256:
        target.unlink()
        raise QuarantineError(f"{path}: sha256 is {sha256}, not {expected_sha256}")
    entry = {
        "id": entry_id,
        "path": path,
        "sha256": sha256,
        "size": info.st_size,
        "mode": stat.S_IMODE(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "mtime_ns": info.st_mtime_ns,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    write_json(directory / f"{entry_id}.json", entry)
    try:
        os.unlink(path)
    except OSError as exc:
        (directory / f"{entry_id}.json").unlink()
        target.unlink()
        raise QuarantineError(f"{path}: cannot remove it ({exc.strerror})") from None
    _set_local_blocks(state_dir, local_blocks(state_dir) | {sha256})
    return entry


def restore(state_dir: Path, entry_id: str) -> dict[str, Any]:
    """Put the file back with its mode, owner and mtime; refuses if the path exists now."""
    if not _ID.match(entry_id):
        raise QuarantineError(f"{entry_id!r} is not a quarantine ID (32 hexadecimal characters)")
    directory = quarantine_dir(state_dir)
    entry = read_json(directory / f"{entry_id}.json")
    if not isinstance(entry, dict):
        raise QuarantineError(f"no quarantine entry {entry_id}")
    path = Path(str(entry["path"]))
    if os.path.lexists(path):
        raise QuarantineError(f"{path} exists now: not replaced (move it away first)")
    if not path.parent.is_dir():
        raise QuarantineError(f"{path.parent}: the directory no longer exists")
    temporary = path.parent / f".traps-restore-{entry_id}"
    out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with (directory / f"{entry_id}.bin").open("rb") as source:
            while chunk := source.read(CHUNK):
                os.write(out, chunk)
        os.fchown(out, int(entry["uid"]), int(entry["gid"]))
        os.fchmod(out, int(entry["mode"]))
        os.fsync(out)
    except BaseException:
        os.close(out)
        temporary.unlink()
        raise
    os.close(out)
    mtime = int(entry["mtime_ns"])
    os.utime(temporary, ns=(mtime, mtime))
    try:
        os.link(temporary, path)  # never replaces a file created meanwhile
    except FileExistsError:
        raise QuarantineError(f"{path} exists now: not replaced") from None
    finally:
        temporary.unlink()
    (directory / f"{entry_id}.bin").unlink()
    (directory / f"{entry_id}.json").unlink()
    still = {str(e.get("sha256")) for e in list_entries(state_dir)}
    blocks = local_blocks(state_dir)
    if entry["sha256"] in blocks and entry["sha256"] not in still:
        _set_local_blocks(state_dir, blocks - {str(entry["sha256"])})
    return entry


def describe(entries: list[dict[str, Any]]) -> str:
    """The table of ``trapsd quarantine list``."""
    if not entries:
        return "quarantine is empty\n"
    lines = [f"{'ID':32}  {'TIME':25}  {'SHA256':16}  PATH"]
    for e in entries:
        lines.append(f"{e['id']:32}  {e['time']:25}  {str(e['sha256'])[:16]}  {e['path']}")
    return "\n".join(lines) + "\n"

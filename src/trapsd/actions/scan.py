"""The ``scan`` action: hash every executable regular file under the given paths and look the
hashes up in the applied policy (blocked = malware, allowed = benign). Bounded in files and
time; symbolic links are not followed and pseudo filesystems are skipped."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from typing import Any

SKIP = ("/proc", "/sys", "/dev/pts", "/run/user")
MAX_MATCHES = 200
CHUNK = 1024 * 1024


def _files(top: str) -> Iterator[str]:
    if os.path.isfile(top):
        yield top
        return
    for root, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = [d for d in dirs if not os.path.join(root, d).startswith(SKIP)]
        for name in files:
            yield os.path.join(root, name)


def _sha256(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, CHUNK):
            digest.update(chunk)
        return digest.digest()
    finally:
        os.close(fd)


def scan(
    paths: list[str],
    blocked: frozenset[bytes],
    allowed: frozenset[bytes],
    max_files: int,
    max_seconds: float,
    max_file_bytes: int,
) -> dict[str, Any]:
    started = time.monotonic()
    counts = {"files": 0, "executables": 0, "hashed": 0, "too_large": 0, "errors": 0}
    matches: list[dict[str, Any]] = []
    allowed_seen = 0
    stopped = ""
    for top in paths:
        for path in _files(top):
            if counts["files"] >= max_files:
                stopped = f"stopped after {max_files} files"
                break
            if time.monotonic() - started > max_seconds:
                stopped = f"stopped after {max_seconds:g} s"
                break
            counts["files"] += 1
            try:
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or not info.st_mode & 0o111:
                    continue
                counts["executables"] += 1
                if info.st_size > max_file_bytes:
                    counts["too_large"] += 1
                    continue
                digest = _sha256(path)
            except OSError:
                counts["errors"] += 1
                continue
            counts["hashed"] += 1
            if digest in allowed:
                allowed_seen += 1
            elif digest in blocked:
                if len(matches) < MAX_MATCHES:
                    matches.append({"path": path, "sha256": digest.hex(), "verdict": "malware"})
        if stopped:
            break
    return {
        **counts,
        "malware": len(matches),
        "benign": allowed_seen,
        "matches": matches,
        "complete": not stopped,
        "stopped": stopped,
        "elapsed_s": round(time.monotonic() - started, 3),
    }


def find_by_hash(paths: list[str], sha256: str, max_files: int, max_seconds: float) -> list[str]:
    """Regular files under ``paths`` whose content has this SHA-256 (for quarantine by hash)."""
    wanted = bytes.fromhex(sha256)
    result = scan(paths, frozenset({wanted}), frozenset(), max_files, max_seconds, 1 << 31)
    return [m["path"] for m in result["matches"]]

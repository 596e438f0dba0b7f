"""Forensics bundles: what a security event's process looked like, kept as gzip JSON.

A bundle holds the ancestor chain (command lines, users), cwd, the environment with secrets
redacted, open files, connections, loaded libraries, SHA-256 of the executable and libraries,
and optionally (off by default) a bounded dump of writable+executable anonymous memory.

The /proc reads that must happen before a kill (:meth:`Forensics.snapshot`) are quick; the
rest (hashing, compression, the disk quota) runs on the ``forensics`` thread, each bundle
within ``forensics_timeout_s``. Files live in ``state_dir/forensics/<id>.json.gz`` (0600);
the oldest go first beyond ``forensics_max_bytes`` or ``forensics_max_bundles``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import queue
import re
import threading
import time
import zlib
from pathlib import Path
from typing import Any

from trapsapi.errors import TrapsError
from trapsd.behaviour import probes
from trapsd.behaviour.proctree import read_creds, read_exe, read_ppid
from trapsd.behaviour.rules import redact_environ, wx_regions
from trapsd.files import ensure_private_dir, write_private
from trapsd.sensors.hashing import Hasher

log = logging.getLogger(__name__)
DIRECTORY = "forensics"
SUFFIX = ".json.gz"
HASH_FILE_MAX = 64 * 1024 * 1024
MAX_LIBRARIES = 256
MAX_FDS = 256
_ID = re.compile(r"^[0-9a-f-]{8,64}$")


def forensics_dir(state_dir: Path) -> Path:
    return state_dir / DIRECTORY


def _fds(pid: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
    except (OSError, ValueError):
        return out
    for name in names[:MAX_FDS]:
        try:
            out.append({"fd": int(name), "target": os.readlink(f"/proc/{pid}/fd/{name}")})
        except OSError:
            continue
    return out


def _connections(pid: int) -> list[dict[str, Any]]:
    import psutil

    try:
        conns = psutil.Process(pid).net_connections(kind="inet")
    except (psutil.Error, OSError):
        return []
    return [
        {
            "fd": c.fd,
            "type": "tcp" if c.type == 1 else "udp",
            "local": f"{c.laddr.ip}:{c.laddr.port}" if c.laddr else None,
            "remote": f"{c.raddr.ip}:{c.raddr.port}" if c.raddr else None,
            "status": c.status,
        }
        for c in conns[:MAX_FDS]
    ]


def _libraries(lines: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for line in lines:
        fields = line.split(None, 5)
        if len(fields) == 6 and fields[5].startswith("/"):
            seen.setdefault(fields[5].strip(), None)
    return list(seen)[:MAX_LIBRARIES]


def _memory(pid: int, regions: list[str], budget: int) -> list[dict[str, Any]]:
    dumps: list[dict[str, Any]] = []
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return dumps
    try:
        for region in regions:
            if budget <= 0:
                break
            start, end = (int(v, 16) for v in region.split()[0].split("-"))
            size = min(end - start, budget)
            try:
                data = os.pread(fd, size, start)
            except OSError:
                continue
            budget -= len(data)
            dumps.append({"region": region, "base64": base64.b64encode(data).decode()})
    finally:
        os.close(fd)
    return dumps


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


class Forensics:
    def __init__(
        self,
        state_dir: Path,
        max_bytes: int,
        max_bundles: int,
        timeout_s: float,
        memory_dump_bytes: int = 0,
    ) -> None:
        self.directory = forensics_dir(state_dir)
        self.max_bytes = max_bytes
        self.max_bundles = max_bundles
        self.timeout_s = timeout_s
        self.memory_dump_bytes = memory_dump_bytes
        self.counts = {"written": 0, "evicted": 0, "dropped": 0, "truncated": 0}
        self._jobs: queue.Queue[tuple[str, dict[str, Any] | None, dict[str, Any]] | None]
        self._jobs = queue.Queue(256)
        self._thread = threading.Thread(target=self._run, name="forensics", daemon=True)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.max_bundles > 0

    def start(self) -> None:
        if self.enabled:
            ensure_private_dir(self.directory)
            self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._jobs.put(None, timeout=1)
            except queue.Full:
                pass
            self._thread.join(self.timeout_s + 2)

    def snapshot(self, pid: int) -> dict[str, Any]:
        """The volatile facts about ``pid`` (before a kill): quick /proc reads only."""
        started = time.monotonic()
        creds = read_creds(pid)
        lines = probes.maps(pid)
        chain: list[dict[str, Any]] = []
        parent = read_ppid(pid)
        while parent and len(chain) < 32:
            chain.append(
                {
                    "pid": parent,
                    "exe": read_exe(parent),
                    "cmdline": probes.cmdline(parent),
                    "uid": _uid(parent),
                }
            )
            parent = read_ppid(parent) if parent != 1 else None
        process: dict[str, Any] = {
            "pid": pid,
            "exe": read_exe(pid),
            "cmdline": probes.cmdline(pid),
            "cwd": _cwd(pid),
            "uids": None if creds is None else [creds.ruid, creds.euid, creds.suid],
            "environ": redact_environ(probes.environ(pid)),
            "open_files": _fds(pid),
            "connections": _connections(pid),
            "libraries": _libraries(lines),
            "wx_regions": wx_regions(lines),
        }
        if self.memory_dump_bytes > 0:
            process["memory"] = _memory(pid, process["wx_regions"], self.memory_dump_bytes)
        return {
            "process": process,
            "ancestors": chain,
            "alive": bool(process["exe"]),
            "snapshot_ms": round((time.monotonic() - started) * 1000, 2),
        }

    def submit(
        self, bundle_id: str, snapshot: dict[str, Any] | None, event: dict[str, Any]
    ) -> bool:
        """Queue a bundle (``snapshot`` None: taken on the forensics thread). Never blocks."""
        if not self.enabled:
            return False
        try:
            self._jobs.put_nowait((bundle_id, snapshot, event))
            return True
        except queue.Full:
            self.counts["dropped"] += 1
            return False

    def _run(self) -> None:
        hasher: Hasher | None = None
        while True:
            job = self._jobs.get()
            if job is None:
                return
            hasher = hasher or Hasher()
            try:
                self._write(hasher, *job)
            except Exception:  # one bad bundle must not stop the next ones
                log.exception("forensics bundle %s failed", job[0])

    def _write(
        self, hasher: Hasher, bundle_id: str, snapshot: dict[str, Any] | None, event: dict[str, Any]
    ) -> None:
        deadline = time.monotonic() + self.timeout_s
        pid = event.get("pid")
        if snapshot is None:
            snapshot = self.snapshot(pid) if isinstance(pid, int) and pid > 0 else {}
        process = snapshot.get("process", {})
        files = [process.get("exe") or event.get("process_path") or ""]
        files += process.get("libraries", [])
        hashes: dict[str, str | None] = {}
        truncated = False
        for path in files:
            if not path or path in hashes:
                continue
            if time.monotonic() > deadline:
                truncated = True
                break
            hashes[path] = _hash(hasher, path)
        if truncated:
            self.counts["truncated"] += 1
        bundle = {
            "id": bundle_id,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "event": event,
            **snapshot,
            "hashes": hashes,
            "truncated": truncated,
        }
        # gzip format through zlib with a small memLevel: ~140 KiB of state, not ~400 KiB
        packer = zlib.compressobj(6, zlib.DEFLATED, 31, 4)
        data = packer.compress(json.dumps(bundle, sort_keys=True).encode()) + packer.flush()
        write_private(self.directory / f"{bundle_id}{SUFFIX}", data)
        self.counts["written"] += 1
        self.counts["evicted"] += enforce_quota(self.directory, self.max_bytes, self.max_bundles)


def _uid(pid: int) -> int | None:
    creds = read_creds(pid)
    return None if creds is None else creds.ruid


def _hash(hasher: Hasher, path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size > HASH_FILE_MAX:
            return None
        return hasher.sha256_fd(fd).hex()
    except OSError:
        return None
    finally:
        os.close(fd)


def list_bundles(directory: Path) -> list[tuple[Path, os.stat_result]]:
    """Bundles oldest first."""
    found: list[tuple[Path, os.stat_result]] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    for entry in entries:
        if entry.name.endswith(SUFFIX):
            try:
                found.append((Path(entry.path), entry.stat()))
            except OSError:
                continue
    found.sort(key=lambda item: (item[1].st_mtime_ns, item[0].name))
    return found


def enforce_quota(directory: Path, max_bytes: int, max_bundles: int) -> int:
    """Delete the oldest bundles until both limits hold; the number deleted."""
    bundles = list_bundles(directory)
    total = sum(st.st_size for _, st in bundles)
    evicted = 0
    while bundles and (total > max_bytes or len(bundles) > max_bundles):
        path, st = bundles.pop(0)
        try:
            path.unlink()
        except OSError:
            continue
        total -= st.st_size
        evicted += 1
    return evicted


def summaries(directory: Path) -> list[dict[str, Any]]:
    """Newest first: id, size and time of every bundle (the headers only, no decoding)."""
    return [
        {
            "id": path.name[: -len(SUFFIX)],
            "bytes": st.st_size,
            "created": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(timespec="seconds"),
        }
        for path, st in reversed(list_bundles(directory))
    ]


def load_bundle(directory: Path, bundle_id: str) -> dict[str, Any] | None:
    if not _ID.match(bundle_id):
        return None
    try:
        data = zlib.decompress((directory / f"{bundle_id}{SUFFIX}").read_bytes(), 47)
    except FileNotFoundError:
        return None
    except zlib.error as exc:
        raise TrapsError(f"forensics bundle {bundle_id}: corrupt ({exc})") from None
    value: dict[str, Any] = json.loads(data)
    return value


def select_bundles(
    directory: Path,
    ids: list[str],
    recent: int | None,
    since: dt.datetime | None,
) -> tuple[list[tuple[str, Path, os.stat_result]], list[str]]:
    """The bundles a retrieve_forensics action asks for, newest first, and the asked-for IDs
    that are not here. A bundle's ID is the ID of its event, so ``ids`` holds either. With
    no IDs, the ``recent`` newest (10 if not given) written at or after ``since``."""
    found = [(p.name[: -len(SUFFIX)], p, st) for p, st in reversed(list_bundles(directory))]
    if ids:
        by_id = {bundle_id: (bundle_id, p, st) for bundle_id, p, st in found}
        wanted = list(dict.fromkeys(ids))
        return [by_id[i] for i in wanted if i in by_id], [i for i in wanted if i not in by_id]
    if since is not None:
        cutoff = since.timestamp()
        found = [item for item in found if item[2].st_mtime >= cutoff]
    return found[: recent or 10], []

"""The detection journal: a memory-mapped ring that makes a detection survive SIGKILL.

A sensor thread decides (and may deny an exec) long before the writer thread has committed
the event to the SQLite outbox. A process killed in between would lose that event. So the
sensor first copies the detection into a slot of a ``MAP_SHARED`` file mapping: a plain
memory write, no system call, nothing that can block the thread that answers fanotify, which
journals a detection *before* it writes its answer to the kernel. The file's blocks are
allocated when it is created and its pages are locked in memory (``mlock``), so a slot write
never waits for a disk read; the only lock is held by other threads for memory writes only. The
kernel keeps those pages when the process dies, however it dies; only a kernel crash or a
power loss before writeback can lose them. Once the outbox has committed the event, the
writer frees the slot. At start-up every slot still holding a record is recovered into the
outbox (the outbox ignores an ID it already has, so a record committed but not yet freed
becomes no duplicate).

Slot layout (``SLOT_BYTES`` each): ``seq u64 | length u32 | crc32 u32 | JSON``; ``seq`` 0 is
a free slot, and the CRC rejects a slot torn by a kill in the middle of a write.
"""

from __future__ import annotations

import json
import logging
import mmap
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

from trapsd.events import Detection

JOURNAL_FILE = "journal.ring"
SLOT_BYTES = 4096
SLOTS = 64  # 256 KiB: far more than the writer ever lags behind
_HEADER = struct.Struct("<QII")
_PAYLOAD = SLOT_BYTES - _HEADER.size
_CLIPPED = ("cmdline", "parent_path", "process_path")
log = logging.getLogger(__name__)


def _payload(detection: Detection) -> bytes:
    """The detection as compact JSON; long texts are clipped until it fits one slot."""
    record: dict[str, Any] = {f: getattr(detection, f) for f in detection.__slots__}
    data = json.dumps(record, separators=(",", ":"), default=str).encode()
    if len(data) <= _PAYLOAD:
        return data
    for field in _CLIPPED:
        if isinstance(record.get(field), str):
            record[field] = record[field][:512]
    record["details"] = {"journal": "details too large for the crash journal"}
    return json.dumps(record, separators=(",", ":"), default=str).encode()[:_PAYLOAD]


class Journal:
    """Thread-safe; :meth:`append` and :meth:`release` only write to mapped memory."""

    def __init__(self, path: Path, slots: int = SLOTS) -> None:
        self.path = path
        self.slots = slots
        size = slots * SLOT_BYTES
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, 0)
                os.pwrite(fd, bytes(size), 0)  # blocks allocated now, not on a later write
            self._map = mmap.mmap(
                fd, size, mmap.MAP_SHARED | mmap.MAP_POPULATE, mmap.PROT_READ | mmap.PROT_WRITE
            )
        finally:
            os.close(fd)
        _lock_in_memory(self._map)
        self._lock = threading.Lock()
        self._next = 1
        self.full = 0  # detections that found no free slot (still queued, just unjournaled)

    def recover(self) -> list[tuple[int, Detection]]:
        """(slot, detection) of every record left by an earlier process, oldest first."""
        found: list[tuple[int, int, Detection]] = []
        for slot in range(self.slots):
            seq, length, crc = _HEADER.unpack_from(self._map, slot * SLOT_BYTES)
            if not seq:
                continue
            start = slot * SLOT_BYTES + _HEADER.size
            data = bytes(self._map[start : start + min(length, _PAYLOAD)])
            try:
                if zlib.crc32(data) != crc:
                    raise ValueError("torn record")
                detection = Detection(**json.loads(data))
            except (ValueError, TypeError) as exc:
                log.warning("journal slot %d unreadable (%s): freed", slot, exc)
                self.release([slot])
                continue
            found.append((seq, slot, detection))
        found.sort(key=lambda item: item[0])
        if found:
            self._next = found[-1][0] + 1
        return [(slot, detection) for _, slot, detection in found]

    def append(self, detection: Detection) -> int:
        """Copy ``detection`` into a free slot; its slot number, or -1 when none is free."""
        data = _payload(detection)
        with self._lock:
            seq = self._next
            slot = seq % self.slots
            base = slot * SLOT_BYTES
            if _HEADER.unpack_from(self._map, base)[0]:  # the writer is a whole ring behind
                self.full += 1
                return -1
            self._next = seq + 1
            self._map[base + _HEADER.size : base + _HEADER.size + len(data)] = data
            # The sequence number goes in last: a slot is only valid once it is complete.
            _HEADER.pack_into(self._map, base, seq, len(data), zlib.crc32(data))
        return slot

    def release(self, slots: list[int]) -> None:
        """The outbox has committed these detections: their slots are free again."""
        with self._lock:
            for slot in slots:
                if 0 <= slot < self.slots:
                    _HEADER.pack_into(self._map, slot * SLOT_BYTES, 0, 0, 0)

    def close(self) -> None:
        with self._lock:
            self._map.close()


def _lock_in_memory(mapping: mmap.mmap) -> None:
    """mlock() the ring: a slot write never waits for a page to be read back from disk.

    (Best effort: without the privilege or the memlock allowance the pages stay in the page
    cache as long as they are used, which they are on every detection.)
    """
    import ctypes

    view = ctypes.c_char.from_buffer(mapping)  # an export of the mapping: released below
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mlock(ctypes.c_void_p(ctypes.addressof(view)), ctypes.c_size_t(len(mapping)))
    except (OSError, AttributeError):
        pass
    finally:
        del view


def journal_path(state_dir: Path) -> Path:
    return state_dir / JOURNAL_FILE

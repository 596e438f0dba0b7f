"""SHA-256 of executables with a bounded cache keyed on the file's identity.

The key is (device, inode, mtime, ctime, size): ctime cannot be set from user space, so a
file rewritten in place with its mtime restored still gets a new key.
"""

from __future__ import annotations

import hashlib
import os
import struct

CHUNK = 256 * 1024
_KEY = struct.Struct("=QQqqq")


def cache_key(st: os.stat_result) -> bytes:
    return _KEY.pack(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


class HashCache:
    """key -> 32-byte digest; the oldest entry goes when full. Owned by one thread."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max(1, max_entries)
        self._entries: dict[bytes, bytes] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> bytes | None:
        digest = self._entries.get(key)
        if digest is None:
            self.misses += 1
        else:
            self.hits += 1
        return digest

    def put(self, key: bytes, digest: bytes) -> None:
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = digest

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class Hasher:
    """Hashes from a file descriptor with pread (no shared offset is moved); one per thread."""

    def __init__(self) -> None:
        self._buffer = bytearray(CHUNK)
        self._view = memoryview(self._buffer)

    def sha256_fd(self, fd: int) -> bytes:
        digest = hashlib.sha256()
        offset = 0
        while True:
            count = os.preadv(fd, [self._buffer], offset)
            if count <= 0:
                break
            digest.update(self._view[:count])
            offset += count
        return digest.digest()

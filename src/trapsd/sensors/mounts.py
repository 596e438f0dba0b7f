"""Which mounted filesystems the exec sensor must watch (parsed from /proc/self/mountinfo)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

# Local filesystems that can hold executables. Network and FUSE filesystems are left out on
# purpose: reading a file there from the verdict thread could block every exec on the host.
LOCAL_TYPES = frozenset(
    {
        "ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "f2fs", "jfs", "reiserfs", "zfs",
        "tmpfs", "ramfs", "devtmpfs", "overlay", "squashfs", "erofs", "iso9660", "udf",
        "vfat", "msdos", "exfat", "ntfs", "ntfs3", "hfsplus", "nilfs2",
    }
)  # fmt: skip
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclasses.dataclass(frozen=True)
class Mount:
    mount_id: str
    device: str  # "major:minor": one superblock
    mount_point: str
    fstype: str


def _unescape(text: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> list[Mount]:
    mounts: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
            mounts.append(Mount(fields[0], fields[2], _unescape(fields[4]), fields[sep + 1]))
        except (ValueError, IndexError):
            continue
    return mounts


def read_mounts() -> list[Mount]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
        return parse_mountinfo(handle.read())


def _below(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/") or "/"
    return path == prefix or path.startswith(prefix + "/") or prefix == "/"


def select_mounts(
    mounts: Iterable[Mount], exclude: Iterable[str] = ()
) -> tuple[list[Mount], list[Mount]]:
    """(one mount per local superblock to mark, the mounts skipped), in mount order."""
    chosen: dict[str, Mount] = {}
    skipped: list[Mount] = []
    excluded = list(exclude)
    for mount in mounts:
        if mount.fstype not in LOCAL_TYPES or any(_below(mount.mount_point, p) for p in excluded):
            skipped.append(mount)
        elif mount.device not in chosen:
            chosen[mount.device] = mount
    return list(chosen.values()), skipped

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
# Pseudo filesystems: neither local storage of executables nor network shares.
PSEUDO_TYPES = frozenset(
    {
        "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs",
        "securityfs", "pstore", "bpf", "configfs", "fusectl", "hugetlbfs", "autofs",
        "binfmt_misc", "nsfs", "rpc_pipefs", "efivarfs", "selinuxfs",
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
    mounts: Iterable[Mount], exclude: Iterable[str] = (), network: Iterable[str] = ()
) -> tuple[list[Mount], list[Mount]]:
    """(one mount per superblock to mark, the mounts skipped), in mount order.

    Local filesystems are always watched; network filesystems only when a module decides by
    filesystem type (``network``: the types it restricts). The verdict thread never reads a
    file on those, it decides on the path alone.
    """
    chosen: dict[str, Mount] = {}
    skipped: list[Mount] = []
    excluded = list(exclude)
    wanted = LOCAL_TYPES | frozenset(network)
    for mount in mounts:
        if mount.fstype not in wanted or any(_below(mount.mount_point, p) for p in excluded):
            skipped.append(mount)
        elif mount.device not in chosen:
            chosen[mount.device] = mount
    return list(chosen.values()), skipped


def network_mounts(mounts: Iterable[Mount]) -> tuple[tuple[str, str], ...]:
    """(mount point, fstype) of network (non-local, non-pseudo) mounts, longest path first.

    Local mounts below one of them are listed too, with fstype "": the longest prefix wins.
    Usually empty, so the verdict thread's lookup costs nothing.
    """
    mounts = list(mounts)
    remote = [
        m.mount_point
        for m in mounts
        if m.fstype not in LOCAL_TYPES and m.fstype not in PSEUDO_TYPES
    ]
    if not remote:
        return ()
    found = {
        m.mount_point: ("" if m.fstype in LOCAL_TYPES or m.fstype in PSEUDO_TYPES else m.fstype)
        for m in mounts
        if any(_below(m.mount_point, r) for r in remote)
    }
    return tuple(sorted(found.items(), key=lambda item: -len(item[0])))

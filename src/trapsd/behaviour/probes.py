"""Reads of /proc a behaviour module needs about one process (each best effort: it may exit)."""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Callable

SOCKET = "socket:["
ENVIRON_MAX = 256 * 1024
MAPS_MAX_LINES = 20_000
MAPS_MAX_BYTES = MAPS_MAX_LINES * 128
WX_PERMISSIONS = b" rwx"


def _address(hex_address: str) -> str:
    host, _, port = hex_address.partition(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip: str = str(ipaddress.IPv4Address(raw[::-1]))
    else:  # four little-endian 32-bit words
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        v6 = ipaddress.IPv6Address(words)
        ip = str(v6.ipv4_mapped or v6)
    return f"{ip}:{int(port, 16)}"


def tcp_peers(pid: int, inodes: set[int]) -> dict[int, str]:
    """{socket inode: "tcp PEER"} for connected TCP sockets of ``pid``'s network namespace."""
    found: dict[int, str] = {}
    for table in ("tcp", "tcp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) < 10 or int(fields[9]) not in inodes:
                        continue
                    remote = fields[2]
                    if remote.partition(":")[2] != "0000":  # connected, not listening
                        found[int(fields[9])] = f"tcp {_address(remote)}"
        except (OSError, ValueError):
            continue
    return found


def stdio_peers(pid: int) -> dict[int, str | None]:
    """{fd: "tcp PEER" or None} for fds 0, 1 and 2 of ``pid``."""
    inodes: dict[int, int] = {}
    for fd in (0, 1, 2):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith(SOCKET):
            inodes[fd] = int(link[len(SOCKET) : -1])
    if not inodes:
        return {}
    peers = tcp_peers(pid, set(inodes.values()))
    return {fd: peers.get(inode) for fd, inode in inodes.items()}


def environ(pid: int) -> bytes:
    """Up to ENVIRON_MAX bytes of ``pid``'s environment (read in pages: most are small)."""
    try:
        fd = os.open(f"/proc/{pid}/environ", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        data = os.read(fd, 8192)
        if len(data) < 8192:
            return data
        chunks, total = [data], len(data)
        while data and total < ENVIRON_MAX:
            data = os.read(fd, 65536)
            chunks.append(data)
            total += len(data)
        return b"".join(chunks)[:ENVIRON_MAX]
    except OSError:
        return b""
    finally:
        os.close(fd)


def maps(pid: int) -> list[str]:
    lines: list[str] = []
    try:
        with open(f"/proc/{pid}/maps") as handle:
            for line in handle:
                lines.append(line)
                if len(lines) >= MAPS_MAX_LINES:
                    break
    except OSError:
        pass
    return lines


def wx_lines(pid: int) -> list[str]:
    """The lines of ``pid``'s /proc/PID/maps with a writable+executable mapping: what the
    periodic W+X scan needs, from one read of the bytes (rarely any line to split)."""
    try:
        fd = os.open(f"/proc/{pid}/maps", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    chunks: list[bytes] = []
    total = 0
    try:
        while total < MAPS_MAX_BYTES and (data := os.read(fd, 65536)):
            chunks.append(data)
            total += len(data)
    except OSError:
        pass
    finally:
        os.close(fd)
    text = b"".join(chunks)
    if WX_PERMISSIONS not in text:
        return []
    return [line.decode(errors="replace") for line in text.splitlines() if WX_PERMISSIONS in line]


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid``, from the kernel (/proc/PID/task/*/children)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as handle:
                found += [int(child) for child in handle.read().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(
    pid: int, children_of: Callable[[int], list[int]] = children, limit: int = 4096
) -> list[int]:
    """Every descendant of ``pid`` (at most ``limit``), by default as the kernel knows them
    now; ``children_of`` may answer from another map (the process tree's)."""
    out: list[int] = []
    seen = {pid}
    todo = [pid]
    while todo and len(out) < limit:
        for child in children_of(todo.pop()):
            if child not in seen:
                seen.add(child)
                out.append(child)
                todo.append(child)
    return out[:limit]


def setuid_root(pid: int) -> bool:
    """Whether the image ``pid`` runs is a setuid-root file (through the exe link: no race)."""
    try:
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return False
    return bool(st.st_mode & stat.S_ISUID) and st.st_uid == 0


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(16384)
    except OSError:
        return ""
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")

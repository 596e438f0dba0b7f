"""The process tree: netlink proc connector events applied to a bounded map of live processes.

The connector says only *that* a process forked, exec'd, changed uid, was traced or exited;
what it runs and as whom is read from /proc at once (racy for very short processes: then the
node keeps what its parent had). Lost messages (ENOBUFS) or an overflowing map trigger a
resync from /proc. Owned by one thread; readers get copies through :meth:`ProcTree.snapshot`.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import threading
from collections.abc import Iterator

from trapsd.behaviour.probes import setuid_root
from trapsd.behaviour.rules import Creds

PROC_EVENT_NONE = 0x0
PROC_EVENT_FORK = 0x1
PROC_EVENT_EXEC = 0x2
PROC_EVENT_UID = 0x4
PROC_EVENT_PTRACE = 0x100
PROC_EVENT_EXIT = 0x80000000
_NLMSG = struct.Struct("=IHHII")
_CNMSG = struct.Struct("=IIIIHH")
_HEAD = struct.Struct("=IIQ")
_FOUR = struct.Struct("=IIII")
_TWO = struct.Struct("=II")
MAX_NODES = 32768


@dataclasses.dataclass(frozen=True, slots=True)
class ProcEvent:
    """One connector event: ``pid`` is the tgid acted on; ``other`` the parent or tracer."""

    what: int
    pid: int
    other: int = 0
    ruid: int = -1
    euid: int = -1
    thread: bool = False


def parse_events(data: bytes) -> Iterator[ProcEvent]:
    offset = 0
    while offset + _NLMSG.size <= len(data):
        length = _NLMSG.unpack_from(data, offset)[0]
        end = offset + length
        if length < _NLMSG.size or end > len(data):
            return
        body = offset + _NLMSG.size + _CNMSG.size
        if body + _HEAD.size + _TWO.size <= end:
            what = _HEAD.unpack_from(data, body)[0]
            at = body + _HEAD.size
            four = at + _FOUR.size <= end
            if what == PROC_EVENT_FORK and four:
                _, ptgid, cpid, ctgid = _FOUR.unpack_from(data, at)
                yield ProcEvent(what, ctgid, ptgid, thread=cpid != ctgid)
            elif what in (PROC_EVENT_EXEC, PROC_EVENT_EXIT):
                pid, tgid = _TWO.unpack_from(data, at)
                yield ProcEvent(what, tgid, thread=pid != tgid)
            elif what == PROC_EVENT_UID and four:
                _, tgid, ruid, euid = _FOUR.unpack_from(data, at)
                yield ProcEvent(what, tgid, ruid=ruid, euid=euid)
            elif what == PROC_EVENT_NONE:  # the subscription's ack: its error code
                yield ProcEvent(what, 0, _TWO.unpack_from(data, at)[0])
            elif what == PROC_EVENT_PTRACE and four:
                _, tgid, _, tracer_tgid = _FOUR.unpack_from(data, at)
                yield ProcEvent(what, tgid, tracer_tgid)
        offset += (length + 3) & ~3


@dataclasses.dataclass(slots=True)
class Node:
    pid: int
    ppid: int
    exe: str
    creds: Creds


def read_creds(pid: int) -> Creds | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Uid:"):
                    r, e, s = (int(v) for v in line.split()[1:4])
                    return Creds(r, e, s)
    except (OSError, ValueError):
        pass
    return None


def read_ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read(1024).rpartition(b")")[2].split(None, 2)[1])
    except (OSError, ValueError, IndexError):
        return None


def read_exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


class ProcTree:
    def __init__(self, max_nodes: int = MAX_NODES) -> None:
        self.max_nodes = max_nodes
        self.nodes: dict[int, Node] = {}
        self.resyncs = 0
        self.lock = threading.Lock()  # held for writes and for snapshots of other threads

    def __len__(self) -> int:
        return len(self.nodes)

    def resync(self) -> None:
        """Rebuild from /proc (at start, after lost events, on overflow)."""
        nodes: dict[int, Node] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit() or len(nodes) >= self.max_nodes:
                continue
            pid = int(name)
            ppid, creds = read_ppid(pid), read_creds(pid)
            if ppid is not None and creds is not None:
                nodes[pid] = Node(pid, ppid, read_exe(pid), creds)
        with self.lock:
            self.nodes = nodes
            self.resyncs += 1

    def fork(self, pid: int, ppid: int) -> Node | None:
        parent = self.nodes.get(ppid)
        if len(self.nodes) >= self.max_nodes:
            return None  # the caller resyncs
        creds = parent.creds if parent else read_creds(pid) or Creds(-1, -1)
        node = Node(pid, ppid, parent.exe if parent else read_exe(pid), creds)
        with self.lock:
            self.nodes[pid] = node
        return node

    def exec(self, pid: int) -> tuple[Creds | None, Node | None]:
        """(creds before the exec, the node after it) — None when the process is gone.

        Credentials follow the events, not /proc (read late, /proc shows what the process
        did since): an exec changes them only through a setuid-root image.
        """
        old = self.nodes.get(pid)
        exe = read_exe(pid)
        if not exe:
            return None, None
        if old is not None and old.creds.ruid >= 0:
            creds = Creds(old.creds.ruid, 0, 0) if setuid_root(pid) else old.creds
        else:
            creds = read_creds(pid) or Creds(-1, -1)
        ppid = old.ppid if old else read_ppid(pid) or 0
        node = Node(pid, ppid, exe, creds)
        with self.lock:
            self.nodes[pid] = node
        return (old.creds if old else None), node

    def set_uid(self, event: ProcEvent) -> tuple[Creds | None, Node | None]:
        """The uids come from the event; the saved uid from /proc when it agrees with it."""
        node = self.nodes.get(event.pid)
        if node is None:
            return None, None
        before = node.creds
        status = read_creds(event.pid)
        consistent = status is not None and (status.ruid, status.euid) == (event.ruid, event.euid)
        suid = status.suid if status is not None and consistent else before.suid
        node.creds = Creds(event.ruid, event.euid, suid)
        return before, node

    def exit(self, pid: int) -> None:
        with self.lock:
            self.nodes.pop(pid, None)

    def get(self, pid: int) -> Node | None:
        return self.nodes.get(pid)

    def snapshot(self) -> list[Node]:
        with self.lock:
            return [dataclasses.replace(n) for n in self.nodes.values()]

    def descendants(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        with self.lock:
            for node in self.nodes.values():
                children.setdefault(node.ppid, []).append(node.pid)
        out: list[int] = []
        todo = [pid]
        while todo and len(out) < 4096:
            for child in children.get(todo.pop(), []):
                if child not in out and child != pid:
                    out.append(child)
                    todo.append(child)
        return out

    def ancestors(self, pid: int, limit: int = 32) -> list[int]:
        chain: list[int] = []
        current = self.nodes.get(pid)
        while current is not None and current.ppid and len(chain) < limit:
            if current.ppid in chain:
                break
            chain.append(current.ppid)
            current = self.nodes.get(current.ppid)
        return chain

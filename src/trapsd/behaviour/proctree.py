"""The process tree: netlink proc connector events applied to a bounded map of live processes.

The connector says only *that* a process forked, exec'd, changed uid, was traced or exited;
what it runs and as whom is read from /proc at once (racy for very short processes: then the
node keeps what its parent had). Lost messages (ENOBUFS) or an overflowing map trigger a
resync from /proc. Owned by one thread; readers get copies through :meth:`ProcTree.snapshot`.
"""

from __future__ import annotations

import dataclasses
import os
import threading

from trapsd.behaviour import probes
from trapsd.behaviour.probes import setuid_root
from trapsd.behaviour.rules import Creds

MAX_NODES = 32768
EXITED_MAX = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Node:
    """Replaced, never changed, once in the tree: work items carry nodes without copies."""

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
        # Nodes of the last group leaders that exited: the process lives on when other
        # threads remain (its events, e.g. an exec from one of them, bring it back).
        self.exited: dict[int, Node] = {}
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
            self.exited = {}
            self.resyncs += 1

    def fork(self, pid: int, ppid: int) -> Node | None:
        self.exited.pop(pid, None)  # a new process: the pid was recycled
        parent = self.nodes.get(ppid) or self.revive(ppid)
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
        old = self.nodes.get(pid) or self.exited.pop(pid, None)  # exec'd by another thread
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

    def set_uid(self, pid: int, ruid: int, euid: int) -> tuple[Creds | None, Node | None]:
        """The uids come from the event; the saved uid from /proc when it agrees with it."""
        node = self.nodes.get(pid) or self.revive(pid)
        if node is None:
            return None, None
        before = node.creds
        status = read_creds(pid)
        consistent = status is not None and (status.ruid, status.euid) == (ruid, euid)
        suid = status.suid if status is not None and consistent else before.suid
        node = dataclasses.replace(node, creds=Creds(ruid, euid, suid))
        with self.lock:
            self.nodes[pid] = node
        return before, node

    def exit(self, pid: int) -> None:
        with self.lock:
            node = self.nodes.pop(pid, None)
        if node is not None:
            self.exited[pid] = node
            if len(self.exited) > EXITED_MAX:
                del self.exited[next(iter(self.exited))]

    def revive(self, pid: int) -> Node | None:
        """The node of a process whose group leader exited, back in the tree (it still runs:
        it made an event)."""
        node = self.exited.pop(pid, None)
        if node is not None:
            with self.lock:
                self.nodes[pid] = node
        return node

    def get(self, pid: int) -> Node | None:
        return self.nodes.get(pid)

    def snapshot(self) -> list[Node]:
        with self.lock:
            return list(self.nodes.values())  # frozen: no copies needed

    def descendants(self, pid: int) -> list[int]:
        children: dict[int, list[int]] = {}
        with self.lock:
            for node in self.nodes.values():
                children.setdefault(node.ppid, []).append(node.pid)
        return probes.descendants(pid, lambda parent: children.get(parent, []))

    def ancestors(self, pid: int, limit: int = 32) -> list[int]:
        chain: list[int] = []
        current = self.nodes.get(pid)
        while current is not None and current.ppid and len(chain) < limit:
            if current.ppid in chain:
                break
            chain.append(current.ppid)
            current = self.nodes.get(current.ppid)
        return chain

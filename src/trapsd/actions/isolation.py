"""Network isolation by policy routing, spoken to the kernel over rtnetlink (no ``ip`` child:
the daemon never spawns processes while its fanotify listener runs).

Isolated means, for IPv4 and IPv6:

* rule ``PRIO_ESM + n``: ``to <ESM address> lookup main`` for every address of every ESM;
* rule ``PRIO_LOOPBACK``: ``to 127.0.0.0/8`` / ``::1`` ``lookup main``;
* rule ``PRIO_ISOLATE``: everything else ``lookup TABLE``, whose only route is
  ``prohibit default`` (the kernel answers EACCES / ICMP administratively prohibited).

Local addresses are routed by the ``local`` table (rule 0) before any of these. Removing the
rules by their priorities undoes everything; both steps are idempotent.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable
from urllib.parse import urlsplit

TABLE = 7337
PRIO_ESM = 7300
PRIO_LOOPBACK = 7390
PRIO_ISOLATE = 7399
MAX_ESM_ADDRESSES = PRIO_LOOPBACK - PRIO_ESM

RTM_NEWROUTE, RTM_DELROUTE, RTM_NEWRULE, RTM_DELRULE = 24, 25, 32, 33
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
FRA_DST, FRA_PRIORITY, FRA_TABLE = 1, 6, 15
RTA_TABLE = 15
FR_ACT_TO_TBL = 1
RTN_UNICAST, RTN_PROHIBIT = 1, 8
RT_TABLE_UNSPEC, RT_TABLE_MAIN = 0, 254
RTPROT_STATIC = 4
FAMILIES = (socket.AF_INET, socket.AF_INET6)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class IsolationError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


class _Netlink:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        self.sock.settimeout(5)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def request(self, kind: int, flags: int, body: bytes) -> int:
        """Send one message and return its errno (0 = done)."""
        self.seq += 1
        header = struct.pack(
            "=IHHII", 16 + len(body), kind, flags | NLM_F_REQUEST | NLM_F_ACK, self.seq, 0
        )
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, msg_type, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
                if msg_type == NLMSG_ERROR and seq == self.seq:
                    code: int = struct.unpack_from("=i", data, offset + 16)[0]
                    return -code
                offset += max(16, (length + 3) & ~3)

    def rule(
        self,
        add: bool,
        family: int,
        priority: int,
        table: int,
        dst: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
    ) -> int:
        header_table = table if table < 256 else RT_TABLE_UNSPEC
        dst_len = dst.prefixlen if dst is not None else 0
        body = struct.pack(
            "=BBBBBBBBI", family, dst_len, 0, 0, header_table, 0, 0, FR_ACT_TO_TBL if add else 0, 0
        )
        body += _attr(FRA_PRIORITY, struct.pack("=I", priority))
        if add:
            body += _attr(FRA_TABLE, struct.pack("=I", table))
            if dst is not None:
                body += _attr(FRA_DST, dst.network_address.packed)
        flags = NLM_F_CREATE | NLM_F_EXCL if add else 0
        return self.request(RTM_NEWRULE if add else RTM_DELRULE, flags, body)

    def prohibit_default(self, add: bool, family: int) -> int:
        body = struct.pack(
            "=BBBBBBBBI", family, 0, 0, 0, RT_TABLE_UNSPEC, RTPROT_STATIC, 0, RTN_PROHIBIT, 0
        )
        body += _attr(RTA_TABLE, struct.pack("=I", TABLE))
        flags = NLM_F_CREATE | NLM_F_EXCL if add else 0
        return self.request(RTM_NEWROUTE if add else RTM_DELROUTE, flags, body)


def _check(code: int, what: str, ignore: Iterable[int] = ()) -> None:
    if code and code not in ignore:
        raise IsolationError(code, f"{what}: {os.strerror(code)}")


def server_addresses(urls: Iterable[str]) -> list[Address]:
    """Every address the ESM URLs resolve to now (resolved before DNS is cut off)."""
    found: list[Address] = []
    for url in urls:
        host = urlsplit(url).hostname
        if not host:
            continue
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if address not in found:
                found.append(address)
    return found[:MAX_ESM_ADDRESSES]


def isolate(addresses: list[Address]) -> None:
    """Apply the rules (replacing any earlier isolation); ESM addresses stay reachable."""
    if not addresses:
        raise IsolationError(errno.EDESTADDRREQ, "no ESM address to keep reachable: not isolating")
    unisolate()
    link = _Netlink()
    try:
        for family in FAMILIES:
            v6 = family == socket.AF_INET6
            code = link.prohibit_default(True, family)
            if code == errno.EAFNOSUPPORT and v6:
                continue  # no IPv6 on this host: nothing to isolate there
            _check(code, "prohibit route", (errno.EEXIST,))
            for n, address in enumerate(addresses):
                if address.version == (6 if v6 else 4):
                    network = ipaddress.ip_network(address)
                    _check(link.rule(True, family, PRIO_ESM + n, RT_TABLE_MAIN, network), "rule")
            loopback = ipaddress.ip_network("::1/128" if v6 else "127.0.0.0/8")
            _check(link.rule(True, family, PRIO_LOOPBACK, RT_TABLE_MAIN, loopback), "rule")
            _check(link.rule(True, family, PRIO_ISOLATE, TABLE, None), "rule")
    except BaseException:
        link.close()
        unisolate()
        raise
    link.close()


def unisolate() -> int:
    """Remove every rule and route of an isolation; how many were removed."""
    removed = 0
    link = _Netlink()
    try:
        for family in FAMILIES:
            for priority in (PRIO_ISOLATE, PRIO_LOOPBACK, *range(PRIO_ESM, PRIO_LOOPBACK)):
                while True:
                    code = link.rule(False, family, priority, 0, None)
                    if code:
                        break
                    removed += 1
            code = link.prohibit_default(False, family)
            if code == 0:
                removed += 1
            else:
                _check(code, "prohibit route", (errno.ESRCH, errno.ENOENT, errno.EAFNOSUPPORT))
    finally:
        link.close()
    return removed

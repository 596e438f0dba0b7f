"""Local analysis of an unknown executable: a few static checks of its ELF image.

It runs on the analyst thread (never the fanotify answering thread), reads at most the ELF
header, the section header table and the section names (bounded reads with ``pread``), and
gives a verdict with its reasons. It is the lowest-precedence source of a verdict: an
admin override, a server verdict or a feed always win over it.

What counts (each a reason, weighted):
- packed: a UPX signature or UPX section names (3), or no section headers at all (2)
- stripped *and* statically linked (1): distribution binaries are stripped but dynamic, so
  stripping alone says nothing
- in a world-writable directory such as /tmp or /dev/shm (1)
- a script or non-ELF file is not judged here (unknown)

Score ≥ 4: malware; 2 or 3: grayware; below: benign-looking (reported as unknown: a clean
static profile says nothing about behaviour).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass

from trapsapi.enums import Verdict

MAX_SECTIONS = 4096
MAX_NAMES = 64 * 1024
_SCAN = 4096  # bytes of the file start searched for a packer signature
_IDENT = struct.Struct("<4sBBB")
# e_type .. e_shstrndx after e_ident, for 64-bit and 32-bit little-endian images
_EHDR = {2: struct.Struct("<HHIQQQIHHHHHH"), 1: struct.Struct("<HHIIIIIHHHHHH")}
_SHDR = {2: struct.Struct("<IIQQQQIIQQ"), 1: struct.Struct("<IIIIIIIIII")}
SHT_SYMTAB = 2
SHT_DYNAMIC = 6
MALWARE_SCORE = 4
GRAYWARE_SCORE = 2


@dataclass(frozen=True)
class Analysis:
    verdict: Verdict
    reasons: tuple[str, ...]
    score: int = 0


UNKNOWN = Analysis(Verdict.UNKNOWN, ())


def _pread(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset) if size > 0 else b""


def _in_writable_dir(path: str) -> bool:
    try:
        mode = os.stat(os.path.dirname(path) or "/").st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IWOTH)


def analyse(fd: int, path: str) -> Analysis:
    """Static checks of the ELF file open at ``fd`` (found at ``path``)."""
    head = _pread(fd, _SCAN, 0)
    if len(head) < 64 or head[:4] != b"\x7fELF":
        return UNKNOWN
    _magic, klass, data, _version = _IDENT.unpack_from(head)
    if klass not in (1, 2) or data != 1:  # little-endian 32/64-bit only (x86, arm, riscv)
        return UNKNOWN
    fields = _EHDR[klass].unpack_from(head, 16)
    shoff, shentsize, shnum, shstrndx = fields[5], fields[10], fields[11], fields[12]
    reasons: list[tuple[str, int]] = []
    if b"UPX!" in head:
        reasons.append(("packed (UPX signature)", 3))
    sections = _sections(fd, klass, shoff, shentsize, shnum, shstrndx)
    if sections is None:
        reasons.append(("no section headers (packed or tampered)", 2))
    else:
        names = {name for name, _ in sections}
        types = {kind for _, kind in sections}
        if any(name.startswith("UPX") for name in names) and not reasons:
            reasons.append(("packed (UPX sections)", 3))
        if SHT_SYMTAB not in types and SHT_DYNAMIC not in types:
            reasons.append(("stripped and statically linked", 1))
    if _in_writable_dir(path):
        reasons.append(("in a world-writable directory", 1))
    score = sum(weight for _, weight in reasons)
    if score >= MALWARE_SCORE:
        verdict = Verdict.MALWARE
    elif score >= GRAYWARE_SCORE:
        verdict = Verdict.GRAYWARE
    else:
        verdict = Verdict.UNKNOWN
    return Analysis(verdict, tuple(reason for reason, _ in reasons), score)


def _sections(
    fd: int, klass: int, shoff: int, entsize: int, count: int, names_index: int
) -> list[tuple[str, int]] | None:
    """(name, type) of every section, or None when the image has no usable table."""
    layout = _SHDR[klass]
    if not shoff or not count or count > MAX_SECTIONS or entsize < layout.size:
        return None
    table = _pread(fd, entsize * count, shoff)
    if len(table) < entsize * count or names_index >= count:
        return None
    headers = [layout.unpack_from(table, i * entsize) for i in range(count)]
    names_header = headers[names_index]
    names = _pread(fd, min(int(names_header[5]), MAX_NAMES), int(names_header[4]))
    result = []
    for header in headers:
        start = int(header[0])
        end = names.find(b"\0", start)
        name = names[start:end].decode(errors="replace") if 0 <= start < len(names) else ""
        result.append((name, int(header[1])))
    return result

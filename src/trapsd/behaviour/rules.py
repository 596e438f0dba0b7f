"""The behaviour modules' settings and their pure decisions (no I/O: unit-tested directly).

Settings come from ``modules.<name>`` of the policy on top of the shipped defaults
(:mod:`trapsd.defaults`), through :func:`trapsd.policy.compile_policy`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any

from trapsd.defaults import (
    FILELESS,
    LD_PRELOAD,
    PRIVILEGE_ESCALATION,
    PTRACE,
    REVERSE_SHELL,
    WX_MEMORY,
)
from trapsd.exec_rules import ModuleConfig, image_name
from trapsd.policy import PolicyError, _merged, _module, _strings

MEMFD = "/memfd:"
DELETED = " (deleted)"


def _any(patterns: Iterable[str]) -> re.Pattern[str]:
    parts = [fnmatch.translate(p) for p in patterns if p]
    return re.compile("|".join(parts) if parts else r"(?!)")


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in dirs)


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """Every behaviour module's switch and lists, validated."""

    reverse_shell: ModuleConfig
    fileless: ModuleConfig
    ld_preload: ModuleConfig
    ptrace: ModuleConfig
    wx_memory: ModuleConfig
    privilege_escalation: ModuleConfig
    shells: tuple[str, ...] = ()
    trusted_lib_dirs: tuple[str, ...] = ()
    ptrace_protected: tuple[str, ...] = ()
    wx_protected: tuple[str, ...] = ()
    wx_exclude: tuple[str, ...] = ()
    escalation_tools: tuple[str, ...] = ()
    trusted_bin_dirs: tuple[str, ...] = ()
    _shells: re.Pattern[str] = re.compile(r"(?!)")
    _ptrace: re.Pattern[str] = re.compile(r"(?!)")
    _wx: re.Pattern[str] = re.compile(r"(?!)")
    _jit: re.Pattern[str] = re.compile(r"(?!)")
    _tools: re.Pattern[str] = re.compile(r"(?!)")

    def config(self, name: str) -> ModuleConfig:
        value: ModuleConfig = getattr(self, name)
        return value

    @property
    def any_active(self) -> bool:
        return any(
            c.active
            for c in (
                self.reverse_shell,
                self.fileless,
                self.ld_preload,
                self.ptrace,
                self.wx_memory,
                self.privilege_escalation,
            )
        )

    def is_shell(self, exe: str) -> bool:
        return self._shells.match(image_name(exe)) is not None

    def ptrace_protects(self, exe: str) -> bool:
        return self._ptrace.match(image_name(exe)) is not None

    def wx_protects(self, exe: str) -> bool:
        name = image_name(exe)
        return self._wx.match(name) is not None and self._jit.match(name) is None


def _dirs(merged: Mapping[str, Any], name: str, field: str) -> tuple[str, ...]:
    values = _strings(merged, name, field)
    for value in values:
        if not value.startswith("/"):
            raise PolicyError(f"policy: {name}.{field}: {value!r} is not absolute")
    return tuple(values)


def compile_behaviour(modules: Mapping[str, Any]) -> Behaviour:
    merged = {n: _merged(n, modules.get(n)) for n in (REVERSE_SHELL, FILELESS, LD_PRELOAD)}
    merged |= {n: _merged(n, modules.get(n)) for n in (PTRACE, WX_MEMORY, PRIVILEGE_ESCALATION)}
    shells = tuple(_strings(merged[REVERSE_SHELL], REVERSE_SHELL, "shells"))
    ptrace = tuple(_strings(merged[PTRACE], PTRACE, "protected"))
    wx = tuple(_strings(merged[WX_MEMORY], WX_MEMORY, "protected"))
    jit = tuple(_strings(merged[WX_MEMORY], WX_MEMORY, "exclude"))
    tools = tuple(_strings(merged[PRIVILEGE_ESCALATION], PRIVILEGE_ESCALATION, "tools"))
    return Behaviour(
        **{name: _module(data, name) for name, data in merged.items()},
        shells=shells,
        trusted_lib_dirs=_dirs(merged[LD_PRELOAD], LD_PRELOAD, "trusted_dirs"),
        ptrace_protected=ptrace,
        wx_protected=wx,
        wx_exclude=jit,
        escalation_tools=tools,
        trusted_bin_dirs=_dirs(merged[PRIVILEGE_ESCALATION], PRIVILEGE_ESCALATION, "trusted_dirs"),
        _shells=_any(shells),
        _ptrace=_any(ptrace),
        _wx=_any(wx),
        _jit=_any(jit),
        _tools=_any(tools),
    )


# --- decisions ------------------------------------------------------------------------------
def reverse_shell(rules: Behaviour, exe: str, stdio: Mapping[int, str | None]) -> str | None:
    """A shell whose stdin or stdout is a TCP connection: the rule that matched, or None.

    ``stdio`` maps fd 0/1/2 to the peer ("tcp 10.0.0.1:4444") when the fd is a TCP socket.
    """
    if not rules.reverse_shell.active or not rules.is_shell(exe):
        return None
    for fd in (0, 1):
        peer = stdio.get(fd)
        if peer:
            return f"{image_name(exe)} fd {fd} is {peer}"
    return None


def fileless(rules: Behaviour, exe: str) -> str | None:
    """An image that is a memfd or a file deleted before it was judged."""
    if not rules.fileless.active:
        return None
    if exe.startswith(MEMFD):
        return "memfd"
    if exe.endswith(DELETED):
        return "deleted binary"
    return None


def preloads(environ: bytes) -> list[str]:
    """The LD_PRELOAD entries of a raw /proc/PID/environ (space- or colon-separated)."""
    name = b"LD_PRELOAD="
    if environ.startswith(name):
        start = len(name)
    else:
        start = environ.find(b"\0" + name) + 1 + len(name)
        if start == len(name):
            return []  # the usual case: one search, no split of the whole environment
    end = environ.find(b"\0", start)
    value = environ[start : end if end >= 0 else len(environ)].decode(errors="replace")
    return [p for p in re.split(r"[\s:]+", value) if p]


def untrusted_preloads(rules: Behaviour, libraries: Iterable[str]) -> list[str]:
    """Preloaded libraries outside the trusted dirs (bare names are searched there by ld.so)."""
    if not rules.ld_preload.active:
        return []
    return [
        lib
        for lib in libraries
        if "/" in lib and (not lib.startswith("/") or not _under(lib, rules.trusted_lib_dirs))
    ]


def ptrace_target(rules: Behaviour, target_exe: str, target_is_agent: bool) -> str | None:
    if not rules.ptrace.active:
        return None
    if target_is_agent:
        return "trapsd"
    return image_name(target_exe) if rules.ptrace_protects(target_exe) else None


ANONYMOUS = ("[heap]", "[stack]", "/dev/zero (deleted)")  # the last: shared anonymous memory


def wx_regions(maps: Iterable[str]) -> list[str]:
    """Writable+executable anonymous (or memfd) mappings of /proc/PID/maps lines."""
    found: list[str] = []
    for line in maps:
        fields = line.split(None, 5)
        if len(fields) < 5 or not fields[1].startswith("rwx"):
            continue
        name = fields[5].strip() if len(fields) > 5 else ""
        if not name or name in ANONYMOUS or name.startswith(("[anon", "/memfd:")):
            found.append(f"{fields[0]} {fields[1]} {name or '[anon]'}".rstrip())
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Creds:
    """Real, effective and saved uids (saved -1 when unknown)."""

    ruid: int
    euid: int
    suid: int = -1

    @property
    def root(self) -> bool:
        return self.ruid == 0 or self.euid == 0


@dataclasses.dataclass(frozen=True, slots=True)
class Image:
    """What the escalating process runs: its path and whether it is setuid-root."""

    path: str
    setuid_root: bool


def escalation(rules: Behaviour, before: Creds | None, after: Creds, image: Image) -> str | None:
    """Why a uid change to root is unexpected, or None when it is expected (or not to root).

    Expected: the process was root already; it runs a known escalation tool or a setuid-root
    binary from a trusted system dir; or it is a root process that dropped privileges and
    kept root as its saved uid (not setuid: it was started as root).
    """
    config = rules.privilege_escalation
    if not config.active or not after.root or before is None or before.root or before.ruid < 0:
        return None
    path = image.path[: -len(DELETED)] if image.path.endswith(DELETED) else image.path
    trusted = _under(path, rules.trusted_bin_dirs)
    if trusted and rules._tools.match(image_name(path)) is not None:
        return None
    if image.setuid_root:
        return None if trusted else f"setuid-root binary outside trusted dirs: {path}"
    if before.suid == 0:
        return None
    return f"uid {before.ruid}/{before.euid} became {after.ruid}/{after.euid}"


SECRET = re.compile(
    r"(TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|KEY|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE)"
    r"|^(AWS_|AZURE_|GCP_|GOOGLE_|GH_|GITHUB_|GITLAB_|NPM_|PGPASS|MYSQL_PWD|DATABASE_URL)",
    re.IGNORECASE,
)
REDACTED = "<redacted>"


def redact_environ(environ: bytes, limit: int = 256) -> dict[str, str]:
    """Environment of a process with the values of secret-looking keys replaced."""
    out: dict[str, str] = {}
    for entry in environ.split(b"\0"):
        if b"=" not in entry:
            continue
        key_b, _, value_b = entry.partition(b"=")
        key = key_b.decode(errors="replace")
        out[key] = REDACTED if SECRET.search(key) else value_b.decode(errors="replace")[:1024]
        if len(out) >= limit:
            break
    return out

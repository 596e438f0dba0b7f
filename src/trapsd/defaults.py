"""Shipped defaults of the modules the server does not configure (yet).

The server's policy currently carries only ``modules.malware``. Every other module runs with the
defaults below; a module entry from the server overrides ``enabled``/``mode``/``user_alert``
(and, when present, the rule lists) of its default. See :func:`trapsd.policy.compile_policy`.

Why these defaults:

- restrictions, NOTIFICATION: executing from /tmp is ordinary in builds, test runs (pytest's
  tmp_path binaries), pip builds and installers; prevention would break ordinary work, so the
  shipped mode reports and a policy opts in to prevention.
- child_process, PREVENTION: the parents are servers that never start these children in normal
  operation on this fleet; a web shell or SQL injection to ``COPY ... FROM PROGRAM`` does.
  Known legitimate uses (PostgreSQL ``archive_command``/``restore_command``, Apache CGI in
  Perl/Python) need an exception (``allow_pairs``) or notification mode by policy.
- memfd_noexec hardening, OFF: with ``vm.memfd_noexec=2`` every ``memfd_create`` that asks for
  an executable memfd fails; runtimes and sandboxes that execute from memfds (this host's own
  tooling does) would break. Offered by policy only.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from trapsapi.enums import Mode

RESTRICTIONS = "restrictions"
CHILD_PROCESS = "child_process"
MEMFD_NOEXEC = "memfd_noexec"

# Directory prefixes (everything below them) and fnmatch globs on the full path.
RESTRICTED_PATHS = ("/tmp", "/var/tmp", "/dev/shm", "/run/user", "/media", "/mnt")
# Filesystem types: executing from a network share is restricted wherever it is mounted.
RESTRICTED_FSTYPES = (
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afs", "ceph",
    "glusterfs", "fuse.glusterfs", "davfs", "fuse.davfs2", "fuse.rclone", "fuse.s3fs",
)  # fmt: skip

# Basename globs of parent images (the exec'ing process's image, or its parent's).
PROTECTED_PARENTS = (
    # web servers
    "nginx", "apache2", "httpd", "httpd-*", "lighttpd", "caddy", "php-fpm*", "traefik",
    # databases and caches
    "mysqld", "mariadbd", "postgres", "postmaster", "redis-server", "valkey-server", "mongod",
    "memcached",
    # Debian's redis-server and valkey-server are links to these (the image /proc shows)
    "redis-check-rdb", "valkey-check-rdb",
)  # fmt: skip
# Basename globs of children they may not start: shells, network tools, interpreters, compilers.
FORBIDDEN_CHILDREN = (
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "csh", "tcsh", "fish", "ash", "busybox",
    "nc", "nc.*", "ncat", "netcat", "socat", "telnet", "curl", "wget",
    "python", "python[0-9]*", "perl", "perl[0-9]*", "php", "php[0-9]*", "ruby", "ruby[0-9]*",
    "lua", "lua[0-9]*", "node", "nodejs",
    "gcc", "gcc-*", "cc", "c++", "g++", "g++-*", "clang", "clang-*", "clang++*", "tcc",
    "x86_64-linux-gnu-gcc*", "aarch64-linux-gnu-gcc*",
)  # fmt: skip

_MODULES: dict[str, dict[str, Any]] = {
    RESTRICTIONS: {
        "enabled": True,
        "mode": Mode.NOTIFICATION,
        "user_alert": False,
        "paths": list(RESTRICTED_PATHS),
        "allow_paths": [],
        "fstypes": list(RESTRICTED_FSTYPES),
    },
    CHILD_PROCESS: {
        "enabled": True,
        "mode": Mode.PREVENTION,
        "user_alert": False,
        "parents": list(PROTECTED_PARENTS),
        "children": list(FORBIDDEN_CHILDREN),
        "allow_pairs": [],
    },
    MEMFD_NOEXEC: {"enabled": False, "mode": Mode.PREVENTION, "user_alert": False},
}
MODULE_DEFAULTS = MappingProxyType(_MODULES)


def module_defaults(name: str) -> dict[str, Any]:
    """A fresh copy of the shipped settings of module ``name`` (empty when none are shipped)."""
    return {
        key: list(value) if isinstance(value, list) else value
        for key, value in _MODULES.get(name, {}).items()
    }


# --- Behaviour modules (process tree from the proc connector; see trapsd.behaviour) -------
# Why these defaults (they must leave compilers, pip, pytest, postgres and test runs alone):
# - reverse_shell, PREVENTION: a shell whose stdin/stdout is a TCP socket is never ordinary
#   work (sshd gives ptys or unix socketpairs, not TCP sockets).
# - fileless, NOTIFICATION: runtimes and sandboxes execute from memfds on this host.
# - ld_preload, NOTIFICATION: developers preload sanitizers and fakers from build trees.
# - ptrace, PREVENTION: attaching to sshd/systemd/servers/trapsd is an attack, not debugging.
# - wx_memory, NOTIFICATION: a scan finds the region after the fact; JIT runtimes excluded.
# - privilege_escalation, PREVENTION: becoming root without a trusted setuid-root binary or a
#   known escalation tool only happens through an exploit.
REVERSE_SHELL = "reverse_shell"
FILELESS = "fileless"
LD_PRELOAD = "ld_preload"
PTRACE = "ptrace"
WX_MEMORY = "wx_memory"
PRIVILEGE_ESCALATION = "privilege_escalation"
BEHAVIOUR_MODULES = (REVERSE_SHELL, FILELESS, LD_PRELOAD, PTRACE, WX_MEMORY, PRIVILEGE_ESCALATION)

SHELLS = (
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "csh", "tcsh", "fish", "ash",
    "busybox", "rbash",
)  # fmt: skip
# Basename globs of protected processes (ptrace targets, W+X scan); trapsd itself always is.
PROTECTED_PROCESSES = (
    "sshd", "sshd-session", "systemd", "init", "cron", "crond", "rsyslogd", "dbus-daemon",
    "nginx", "apache2", "httpd", "postgres", "postmaster", "mysqld", "mariadbd",
    "redis-server", "mongod", "containerd", "dockerd", "trapsd",
)  # fmt: skip
TRUSTED_LIB_DIRS = (
    "/lib", "/lib64", "/lib32", "/usr/lib", "/usr/lib64", "/usr/lib32", "/usr/local/lib",
)  # fmt: skip
TRUSTED_BIN_DIRS = ("/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/libexec")
JIT_RUNTIMES = (
    "java", "node", "nodejs", "dotnet", "mono", "luajit", "pypy*", "qemu-*", "chrome*",
    "firefox*", "electron", "php-fpm*", "beam.smp",
)  # fmt: skip
ESCALATION_TOOLS = (
    "sudo", "su", "pkexec", "login", "sshd", "sshd-session", "cron", "crond", "atd",
    "newgrp", "sg", "passwd", "chsh", "chfn", "gpasswd", "mount", "umount", "fusermount",
    "fusermount3", "doas", "runuser", "setpriv", "unix_chkpwd", "polkit-agent-helper-1",
    "dbus-daemon-launch-helper", "ssh-keysign", "systemd*", "Xorg", "newuidmap", "newgidmap",
)  # fmt: skip

_MODULES.update(
    {
        REVERSE_SHELL: {
            "enabled": True, "mode": Mode.PREVENTION, "user_alert": False,
            "shells": list(SHELLS),
        },
        FILELESS: {"enabled": True, "mode": Mode.NOTIFICATION, "user_alert": False},
        LD_PRELOAD: {
            "enabled": True, "mode": Mode.NOTIFICATION, "user_alert": False,
            "trusted_dirs": list(TRUSTED_LIB_DIRS),
        },
        PTRACE: {
            "enabled": True, "mode": Mode.PREVENTION, "user_alert": False,
            "protected": list(PROTECTED_PROCESSES),
        },
        WX_MEMORY: {
            "enabled": True, "mode": Mode.NOTIFICATION, "user_alert": False,
            "protected": list(PROTECTED_PROCESSES), "exclude": list(JIT_RUNTIMES),
        },
        PRIVILEGE_ESCALATION: {
            "enabled": True, "mode": Mode.PREVENTION, "user_alert": False,
            "tools": list(ESCALATION_TOOLS), "trusted_dirs": list(TRUSTED_BIN_DIRS),
        },
    }
)  # fmt: skip

"""The shipped default policy (``esmd init`` creates it; ``policies/default.yaml`` is the same).

Its rules mirror the agent's shipped defaults (``trapsd.defaults``; a test keeps the two
equal) and are also the built-in value of any setting no matching policy sets. Behaviour
modules only notify by default: none of them may ever break ordinary work (compilers, pip,
pytest, PostgreSQL, JIT runtimes), and W^X memory is off because every JIT writes code.
"""

from __future__ import annotations

from typing import Any

from esmd.services.policy_resolve import flatten

RESTRICTED_PATHS = ["/tmp", "/var/tmp", "/dev/shm", "/run/user", "/media", "/mnt"]
RESTRICTED_FSTYPES = [
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "afs", "ceph",
    "glusterfs", "fuse.glusterfs", "davfs", "fuse.davfs2", "fuse.rclone", "fuse.s3fs",
]  # fmt: skip
PROTECTED_PARENTS = [
    "nginx", "apache2", "httpd", "httpd-*", "lighttpd", "caddy", "php-fpm*", "traefik",
    "mysqld", "mariadbd", "postgres", "postmaster", "redis-server", "valkey-server", "mongod",
    "memcached", "redis-check-rdb", "valkey-check-rdb",
]  # fmt: skip
FORBIDDEN_CHILDREN = [
    "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "csh", "tcsh", "fish", "ash", "busybox",
    "nc", "nc.*", "ncat", "netcat", "socat", "telnet", "curl", "wget",
    "python", "python[0-9]*", "perl", "perl[0-9]*", "php", "php[0-9]*", "ruby", "ruby[0-9]*",
    "lua", "lua[0-9]*", "node", "nodejs",
    "gcc", "gcc-*", "cc", "c++", "g++", "g++-*", "clang", "clang-*", "clang++*", "tcc",
    "x86_64-linux-gnu-gcc*", "aarch64-linux-gnu-gcc*",
]  # fmt: skip


def _notify() -> dict[str, Any]:
    return {"mode": "notification", "user_alert": False}


DEFAULT_POLICY: dict[str, Any] = {
    "name": "default",
    "description": "Shipped baseline for every agent: blocks known malware and web/database "
    "servers starting shells; reports execution from temporary and removable locations.",
    "priority": 0,
    "enabled": True,
    "targets": {"include": {"all": True}},
    "rules": {
        "malware": {
            "mode": "prevention",
            "user_alert": True,
            "unknown_file": "allow",
            "offline": "allow",
        },
        "restrictions": {
            "mode": "notification",
            "user_alert": False,
            "paths": RESTRICTED_PATHS,
            "allow_paths": [],
            "fstypes": RESTRICTED_FSTYPES,
        },
        "child_process": {
            "mode": "prevention",
            "user_alert": False,
            "parents": PROTECTED_PARENTS,
            "children": FORBIDDEN_CHILDREN,
            "allow_pairs": [],
        },
        # As trapsd/defaults.py ships them (why each: see there).
        "behaviour": {
            "reverse_shell": {"mode": "prevention", "user_alert": False},
            "fileless": _notify(),
            "ld_preload": _notify(),
            "ptrace": {"mode": "prevention", "user_alert": False},
            "wx_memory": _notify(),
            "privilege_escalation": {"mode": "prevention", "user_alert": False},
        },
        "memfd_noexec": {"mode": "off"},
        "agent": {
            "log_quota_mb": 100,
            "console": "visible",
            "user_alert_message": "Traps stopped a program that is not allowed on this host.",
            "hide_user_alerts": False,
        },
        "forensics": {
            "enabled": True,
            "quota_mb": 256,
            "retention_days": 14,
            "memory_dump": False,
        },
    },
}

BUILTIN: dict[str, Any] = flatten(DEFAULT_POLICY["rules"])
"""The value of every setting that no matching policy sets."""

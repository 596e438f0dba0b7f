"""The agent-wide settings of a policy (``agent``, ``forensics``): validated like the rules.

Both blocks are optional on the wire (an older ESM sends neither): the shipped values below
then apply. Nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from trapsapi.errors import TrapsError

BEHAVIOUR_MODULES = (
    "reverse_shell",
    "fileless",
    "ld_preload",
    "ptrace",
    "wx_memory",
    "privilege_escalation",
)
CONSOLE_VALUES = ("visible", "root_only", "hidden")
FILE_ACTIONS = ("allow", "notify", "block")
_PASSWORD_HASH = re.compile(r"^pbkdf2-sha256\$([0-9]{4,7})\$([0-9a-f]{32})\$([0-9a-f]{64})$")


class PolicyError(TrapsError):
    pass


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    log_quota_mb: int = 100
    console: str = "visible"
    user_alert_message: str | None = "Traps stopped a program that is not allowed on this host."
    uninstall_password_hash: str | None = None

    def password_matches(self, plain: str) -> bool:
        """Whether ``plain`` is the stop/uninstall password (True when none is set)."""
        if self.uninstall_password_hash is None:
            return True
        match = _PASSWORD_HASH.match(self.uninstall_password_hash)
        if match is None:
            return False
        iterations, salt, digest = match.groups()
        got = hashlib.pbkdf2_hmac("sha256", plain.encode(), bytes.fromhex(salt), int(iterations))
        return hmac.compare_digest(got.hex(), digest)


@dataclasses.dataclass(frozen=True)
class ForensicsConfig:
    enabled: bool = True
    quota_mb: int = 256
    retention_days: int = 14
    memory_dump: bool = False


def _int(data: Mapping[str, Any], block: str, name: str, low: int, high: int) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PolicyError(f"policy: {block}.{name} must be an integer from {low} to {high}")
    return value


def _bool(data: Mapping[str, Any], block: str, name: str) -> bool:
    value = data[name]
    if not isinstance(value, bool):
        raise PolicyError(f"policy: {block}.{name} must be true or false")
    return value


def _block(data: Any, name: str, default: Any) -> dict[str, Any]:
    if data is None:
        return dataclasses.asdict(default)
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy: {name} must be an object")
    given = {k: v for k, v in data.items() if k in dataclasses.asdict(default)}
    return {**dataclasses.asdict(default), **given}


def agent_config(data: Any) -> AgentConfig:
    merged = _block(data, "agent", AgentConfig())
    console = merged["console"]
    if console not in CONSOLE_VALUES:
        raise PolicyError(f"policy: agent.console must be one of {', '.join(CONSOLE_VALUES)}")
    message = merged["user_alert_message"]
    if message is not None and not isinstance(message, str):
        raise PolicyError("policy: agent.user_alert_message must be a string or null")
    hashed = merged["uninstall_password_hash"]
    if hashed is not None and (not isinstance(hashed, str) or not _PASSWORD_HASH.match(hashed)):
        raise PolicyError("policy: agent.uninstall_password_hash is not a pbkdf2-sha256 hash")
    return AgentConfig(_int(merged, "agent", "log_quota_mb", 1, 10240), console, message, hashed)


def forensics_config(data: Any) -> ForensicsConfig:
    merged = _block(data, "forensics", ForensicsConfig())
    return ForensicsConfig(
        _bool(merged, "forensics", "enabled"),
        _int(merged, "forensics", "quota_mb", 1, 102400),
        _int(merged, "forensics", "retention_days", 1, 3650),
        _bool(merged, "forensics", "memory_dump"),
    )


def file_action(data: Mapping[str, Any], name: str) -> str:
    """The malware module's ``unknown_file``/``offline`` action (allow when not sent)."""
    value = data.get(name) or "allow"
    if value not in FILE_ACTIONS:
        raise PolicyError(f"policy: malware.{name} must be one of {', '.join(FILE_ACTIONS)}")
    return str(value)

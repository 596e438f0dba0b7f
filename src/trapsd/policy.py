"""The applied policy and the pure verdict decisions made from it.

Nothing here does I/O except :func:`load_policy`/:func:`save_policy`, so every decision the
sensors make is unit-testable without a kernel.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trapsapi.enums import EventAction, Mode
from trapsapi.errors import TrapsError
from trapsapi.wire import AgentPolicy
from trapsd.files import read_json, write_json

POLICY_FILE = "policy.json"
MALWARE = "malware"
DEFAULT_HEARTBEAT_S = 3600
MIN_HEARTBEAT_S = 10  # whatever the server says: the footprint budget comes first
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")

ALLOW = "allow"
DENY = "deny"
NOTIFY = "notify"


class PolicyError(TrapsError):
    pass


@dataclasses.dataclass(frozen=True)
class ModuleConfig:
    enabled: bool = True
    mode: str = Mode.PREVENTION
    user_alert: bool = False

    @property
    def active(self) -> bool:
        return self.enabled and self.mode != Mode.OFF


@dataclasses.dataclass(frozen=True)
class Policy:
    """A validated policy; hashes as 32-byte digests so a lookup costs one set probe."""

    version: int | None
    heartbeat_interval_s: int
    malware: ModuleConfig
    blocked: frozenset[bytes]
    allowed: frozenset[bytes]
    wire: Mapping[str, Any] | None = None

    def same_rules(self, other: Policy) -> bool:
        return (self.malware, self.blocked, self.allowed) == (
            other.malware,
            other.blocked,
            other.allowed,
        )


def default_policy() -> Policy:
    """Before the first check-in: malware prevention on, nothing blocked yet."""
    return Policy(None, DEFAULT_HEARTBEAT_S, ModuleConfig(), frozenset(), frozenset())


def _digests(values: Any, field: str) -> frozenset[bytes]:
    if not isinstance(values, list):
        raise PolicyError(f"policy: {field} must be a list")
    out: set[bytes] = set()
    for value in values:
        if not isinstance(value, str) or not _SHA256.match(value):
            raise PolicyError(f"policy: {field} holds {value!r}, not a SHA-256")
        out.add(bytes.fromhex(value))
    return frozenset(out)


def _module(data: Any, name: str) -> ModuleConfig:
    if data is None:
        return ModuleConfig()
    if not isinstance(data, Mapping):
        raise PolicyError(f"policy: module {name!r} must be an object")
    mode = str(data.get("mode", Mode.PREVENTION))
    if mode not in set(Mode):
        raise PolicyError(f"policy: module {name!r} has unknown mode {mode!r}")
    return ModuleConfig(bool(data.get("enabled", True)), mode, bool(data.get("user_alert", False)))


def compile_policy(wire: Mapping[str, Any]) -> Policy:
    """Validate a policy from the server (or policy.json) completely before it is applied."""
    if not isinstance(wire, Mapping):
        raise PolicyError("policy: expected an object")
    version = wire.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise PolicyError("policy: version must be an integer")
    heartbeat = wire.get("heartbeat_interval_s", DEFAULT_HEARTBEAT_S)
    if not isinstance(heartbeat, int) or isinstance(heartbeat, bool) or heartbeat < 0:
        raise PolicyError("policy: heartbeat_interval_s must be a non-negative integer")
    modules = wire.get("modules")
    modules = {} if modules is None else modules
    if not isinstance(modules, Mapping):
        raise PolicyError("policy: modules must be an object")
    return Policy(
        version=version,
        heartbeat_interval_s=max(heartbeat, MIN_HEARTBEAT_S) if heartbeat else DEFAULT_HEARTBEAT_S,
        malware=_module(modules.get(MALWARE), MALWARE),
        blocked=_digests(wire.get("blocked_hashes", []), "blocked_hashes"),
        allowed=_digests(wire.get("allowed_hashes", []), "allowed_hashes"),
        wire=dict(wire),
    )


def decide(policy: Policy, digest: bytes) -> str:
    """The malware module's verdict for an executable with this SHA-256 digest.

    An allow-listed hash always runs; a blocked one is denied in prevention mode and reported
    in notification mode; anything else runs.
    """
    if not policy.malware.active or digest in policy.allowed or digest not in policy.blocked:
        return ALLOW
    return DENY if policy.malware.mode == Mode.PREVENTION else NOTIFY


def action_for(decision: str, can_block: bool) -> str:
    """The event action: prevented before it ran, killed after it started, or only notified."""
    if decision == NOTIFY:
        return EventAction.NOTIFIED
    return EventAction.PREVENTED if can_block else EventAction.KILLED


def policy_path(state_dir: Path) -> Path:
    return state_dir / POLICY_FILE


def load_policy(state_dir: Path) -> Policy | None:
    """The last applied policy, so enforcement survives a restart without the server."""
    data = read_json(policy_path(state_dir))
    return None if data is None else compile_policy(data)


def save_policy(state_dir: Path, wire: AgentPolicy | Mapping[str, Any]) -> None:
    write_json(policy_path(state_dir), dict(wire))

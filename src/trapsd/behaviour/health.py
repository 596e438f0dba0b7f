"""The behaviour modules' states for check-in and `trapsd status`: mechanism and health."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from trapsapi.wire import ModuleState
from trapsd.behaviour.source import PollSource
from trapsd.defaults import BEHAVIOUR_MODULES, PRIVILEGE_ESCALATION, REVERSE_SHELL, WX_MEMORY
from trapsd.policy import Policy

if TYPE_CHECKING:
    from trapsd.behaviour.engine import BehaviourEngine


def module_states(engine: BehaviourEngine) -> list[ModuleState]:
    b = engine.policy.behaviour
    source = engine.source
    states: list[ModuleState] = []
    for name in BEHAVIOUR_MODULES:
        config = b.config(name)
        healthy, detail, mechanism = _health(engine, name)
        if not config.active:
            healthy, detail, mechanism = True, "disabled by policy", "none"
        states.append(
            {
                "name": name,
                "enabled": config.enabled,
                "mode": config.mode,
                "mechanism": mechanism if source else "none",
                "healthy": healthy,
                "detail": detail[:255],
            }
        )
    return states


def _health(engine: BehaviourEngine, name: str) -> tuple[bool, str, str]:
    source = engine.source
    if source is None:
        return False, "not started", "none"
    mechanism = source.mechanism
    if name == WX_MEMORY:
        mechanism = "maps-scan"
    elif name == REVERSE_SHELL:
        mechanism += "+fd-scan"
    crashed = engine.crashed or source.crashed
    if crashed:
        return False, f"stopped: {crashed}", mechanism
    if os.geteuid() != 0:
        return False, "not root: only this user's processes can be inspected", mechanism
    if isinstance(source, PollSource):
        if name == WX_MEMORY:
            return True, f"every {engine.settings.behaviour_scan_interval_s:g} s", mechanism
        why = f"{source.why}; polling every {source.interval:g} s misses short processes"
        if name == PRIVILEGE_ESCALATION:
            why += " and uid changes of running processes"
        return False, why, mechanism
    if name == WX_MEMORY:
        return True, f"every {engine.settings.behaviour_scan_interval_s:g} s", mechanism
    return True, f"{len(engine.tree)} processes tracked", mechanism


def idle_states(policy: Policy, why: str) -> list[ModuleState]:
    """The states when the engine could not start: an active module is not healthy."""
    states: list[ModuleState] = []
    for name in BEHAVIOUR_MODULES:
        config = policy.behaviour.config(name)
        states.append(
            {
                "name": name,
                "enabled": config.enabled,
                "mode": config.mode,
                "mechanism": "none",
                "healthy": not config.active,
                "detail": why[:255] or "not started",
            }
        )
    return states

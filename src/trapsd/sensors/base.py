"""The sensor interface and the factory that picks the best mechanism available.

Order of preference: fanotify (blocks before execution; root), the netlink proc connector
(detect + kill; CAP_NET_ADMIN), psutil polling (detect + kill; anyone). Whatever is chosen,
the module reports its mechanism and, when it cannot block, why.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from trapsd.config import AgentSettings
from trapsd.events import Detection
from trapsd.exec_rules import decide
from trapsd.policy import Policy

Emit = Callable[[Detection], None]


class Recorder(Protocol):
    """Journals a detection before the kernel is answered, then hands it on.

    :meth:`journal_detection` is a memory write only (the crash journal's mapped pages): the
    fanotify answering thread calls it before it writes its response, so a detection survives
    a kill at any point after the verdict.
    """

    def journal_detection(self, detection: Detection, replaces: int = -1) -> int:
        """Record ``detection`` (freeing slot ``replaces``); its slot, -1 if none."""
        ...

    def emit_journaled(self, slot: int, detection: Detection) -> None: ...


Judge = Callable[[Policy, bytes, str], str]
"""(policy, SHA-256 digest, path) → ALLOW, NOTIFY or DENY."""

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
ORDER = ("fanotify", "proc-connector", "psutil-poll")


class SensorUnavailable(Exception):
    """This mechanism cannot run here; the message says why (one line)."""


class Sensor(Protocol):
    mechanism: str
    can_block: bool

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def set_policy(self, policy: Policy) -> None: ...

    def health(self) -> tuple[bool, str]: ...

    def stats(self) -> dict[str, int]: ...


def has_capability(cap: int) -> bool:
    """Whether the effective capability set holds ``cap`` (from /proc/self/status)."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError, IndexError):
        pass
    return os.geteuid() == 0


def create_sensor(
    settings: AgentSettings,
    policy: Policy,
    emit: Emit,
    judge: Judge = decide,
    recorder: Recorder | None = None,
) -> Sensor:
    """Start and return the best sensor from ``settings.malware_mechanism`` down."""
    from trapsd.sensors.fanotify import FanotifySensor
    from trapsd.sensors.poll import PollSensor
    from trapsd.sensors.proc_connector import ProcConnectorSensor

    wanted = settings.malware_mechanism
    order = ORDER if wanted == "auto" else ORDER[ORDER.index(wanted) :]
    reasons: list[str] = []
    for mechanism in order:
        why = reasons[0] if reasons else ""
        sensor: Sensor
        if mechanism == "fanotify":
            sensor = FanotifySensor(settings, policy, emit, judge, recorder)
        elif mechanism == "proc-connector":
            sensor = ProcConnectorSensor(settings, policy, emit, judge, why)
        else:
            sensor = PollSensor(settings, policy, emit, judge, why)
        try:
            sensor.start()
        except SensorUnavailable as exc:
            reasons.append(f"{mechanism}: {exc}")
            continue
        return sensor
    raise SensorUnavailable("; ".join(reasons))

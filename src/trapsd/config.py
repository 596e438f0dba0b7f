"""Agent settings: a dataclass loaded by :func:`trapsapi.settings.load_settings`.

Precedence: command line > ``TRAPSD_*`` environment > TOML file (``TRAPSD_CONFIG`` or
/etc/trapsd/trapsd.toml) > defaults. The server list and credentials are not settings: they
live in the identity file written by ``trapsd enroll``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trapsapi.errors import ConfigError
from trapsapi.settings import load_settings

PREFIX = "TRAPSD_"
DEFAULT_CONFIG = Path("/etc/trapsd/trapsd.toml")
MECHANISMS = ("auto", "fanotify", "proc-connector", "psutil-poll")
MAX_BATCH = 1000  # the server's limit per upload (trapsapi.models.MAX_EVENTS_PER_BATCH)


@dataclasses.dataclass
class AgentSettings:
    state_dir: Path = Path("/var/lib/trapsd")
    """Identity, policy, outbox, status and the control socket (0700, files 0600)."""
    outbox_max_bytes: int = 256 * 1024 * 1024
    """Events beyond this are not stored; they are counted and reported as events_dropped."""
    batch_size: int = 500
    replay_events_per_s: float = 1000.0
    """Upload rate while a backlog drains (after an outage), so that a fleet coming back
    does not flood the ESM; 0 = unlimited. Fresh events within the rate go at once."""
    request_timeout_s: float = 10.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 300.0
    wake_channel: bool = True
    """Hold a long-poll to the ESM so policy changes and actions arrive at once."""
    wait_timeout_s: int = 55
    """How long the server may hold one long-poll (it caps this at its own maximum)."""
    heartbeat_jitter: float = 0.1
    """Each heartbeat comes after the interval ± this fraction (spreads a fleet out)."""
    ca_file: str | None = None
    control_socket_group: str | None = None
    """A group allowed to use the control socket (`trapsd status/checkin` without root)."""
    malware_mechanism: str = "auto"
    """auto (best available), fanotify, proc-connector or psutil-poll."""
    poll_interval_s: float = 0.5
    watchdog_timeout_s: float = 1.0
    """A fanotify verdict taking longer than this makes the agent fail open and restart."""
    verdict_cache_size: int = 4096
    hash_max_bytes: int = 128 * 1024 * 1024
    """Executables larger than this are allowed without hashing (bounded verdict latency)."""
    ignore_marks: bool = True
    """Mark allowed inodes so that the kernel stops asking about them (flushed on policy change)."""
    ignore_marks_max: int = 8192
    exclude_mounts: list[str] = dataclasses.field(default_factory=list)
    """Mount points (and everything below them) fanotify must not watch."""
    mount_rescan_s: float = 0.0
    """Mounts are marked when the mount table changes (POLLPRI on /proc/self/mountinfo);
    a value > 0 also rescans it this often (0: only on a change, no periodic wake-up)."""
    event_repeat_window_s: float = 60.0
    """Duplicates of an event (module, path, parent, action) within this window are counted
    into one summary event with a repeat count."""
    batch_scheduling: bool = True
    """Run every thread but the fanotify ones as SCHED_BATCH (no preemption of the host's
    work when they wake; the same share of CPU). See trapsd.scheduling."""
    log_level: str = "info"
    behaviour_mechanism: str = "auto"
    """Process tree for the behaviour modules: auto, proc-connector or psutil-poll."""
    behaviour_scan_interval_s: float = 30.0
    """Period of the bounded scans: shells' stdio, W+X memory of protected processes."""
    behaviour_storm_period_ms: float = 1.0
    """During an exec storm (more than ~250 execs a second) the process tree reads the
    kernel's events this often instead of being woken by each exec; a process that lives
    shorter than that meanwhile is not judged by the behaviour modules. 0: every exec wakes
    it (see trapsd.behaviour.pacing)."""
    forensics_max_bytes: int = 64 * 1024 * 1024
    """Disk quota of the forensics bundles (oldest deleted first); 0 turns bundles off."""
    forensics_max_bundles: int = 500
    forensics_timeout_s: float = 5.0
    """Time budget of one bundle (hashing stops there; the bundle says truncated)."""
    forensics_memory_dump_bytes: int = 0
    """Bytes of W+X anonymous memory copied into a bundle; 0 (default) dumps nothing."""

    def validate(self) -> AgentSettings:
        if self.malware_mechanism not in MECHANISMS:
            raise ConfigError(
                f"malware_mechanism: {self.malware_mechanism!r} is not one of "
                f"{', '.join(MECHANISMS)}"
            )
        if self.behaviour_mechanism not in ("auto", "proc-connector", "psutil-poll"):
            raise ConfigError(
                f"behaviour_mechanism: {self.behaviour_mechanism!r} is not one of "
                "auto, proc-connector, psutil-poll"
            )
        for name in ("behaviour_scan_interval_s", "forensics_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be greater than 0")
        if not 0 <= self.behaviour_storm_period_ms <= 100:
            raise ConfigError("behaviour_storm_period_ms: must be between 0 (off) and 100")
        for name in ("forensics_max_bytes", "forensics_max_bundles", "forensics_memory_dump_bytes"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must not be negative")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise ConfigError(f"batch_size: must be between 1 and {MAX_BATCH}")
        for name in ("request_timeout_s", "poll_interval_s", "watchdog_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: must be greater than 0")
        if self.mount_rescan_s < 0:
            raise ConfigError("mount_rescan_s: must be 0 (on change only) or more")
        if self.replay_events_per_s < 0:
            raise ConfigError("replay_events_per_s: must be 0 (unlimited) or more")
        if self.backoff_max_s < self.backoff_min_s:
            raise ConfigError("backoff_max_s: must not be less than backoff_min_s")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level: {self.log_level!r} is not debug, info, warning or error")
        return self


def config_path(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if explicit is not None:
        return explicit
    return Path(env[PREFIX + "CONFIG"]) if env.get(PREFIX + "CONFIG") else DEFAULT_CONFIG


def load(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> AgentSettings:
    """Settings from every source; a missing default config file is not an error."""
    path = config_path(config_file, environ)
    if config_file is not None and not path.exists():
        raise ConfigError(f"{path}: no such config file")
    settings = load_settings(AgentSettings, PREFIX, path, overrides, environ)
    return settings.validate()

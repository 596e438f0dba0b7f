"""Kernel hardening offered by policy: ``vm.memfd_noexec`` (fileless execution from memfds).

With the policy on, the agent sets the sysctl to 2 (no memfd can be made executable, so
nothing can be exec'd from one) and restores the value it found when the policy turns it
off or the agent stops. The value found is saved in the state directory first: after a crash
the next start still knows what to restore, instead of taking its own 2 for the original.

The sysctl is per PID namespace (a child namespace copies its parent's value), so the agent
changes the namespace it runs in. Shipped default: off (see :mod:`trapsd.defaults`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from trapsapi.errors import TrapsError
from trapsd.files import read_json, write_json

log = logging.getLogger(__name__)
SYSCTL = Path("/proc/sys/vm/memfd_noexec")
SAVED = "memfd_noexec.json"
HARDENED = 2


class MemfdNoexec:
    name = "memfd_noexec"

    def __init__(self, state_dir: Path, sysctl: Path = SYSCTL) -> None:
        self.sysctl = sysctl
        self.saved = state_dir / SAVED
        self.error = ""
        self.applied = False

    def available(self) -> bool:
        return self.sysctl.exists()

    def read(self) -> int:
        return int(self.sysctl.read_text().strip())

    def set(self, wanted: bool) -> None:
        """Apply the policy's setting; errors are kept for the module state, never raised."""
        try:
            if wanted:
                self._harden()
            else:
                self.restore()
            self.error = ""
        except (OSError, ValueError, KeyError, TypeError, TrapsError) as exc:
            self.error = f"cannot {'set' if wanted else 'restore'} vm.memfd_noexec: {exc}"
            log.error("%s", self.error)

    def _harden(self) -> None:
        if not self.available():
            raise OSError("the kernel has no vm.memfd_noexec (Linux 6.3 or later)")
        current = self.read()
        saved = read_json(self.saved)
        if saved is None:
            write_json(self.saved, {"previous": current})
        if current != HARDENED:
            self.sysctl.write_text(f"{HARDENED}\n")
            log.info("vm.memfd_noexec: %d -> %d", current, HARDENED)
        self.applied = True

    def restore(self) -> None:
        """Put back the value found before hardening (also after a crash: it was saved)."""
        saved = read_json(self.saved)
        if saved is None:
            self.applied = False
            return
        previous = int(saved["previous"])
        if self.available() and self.read() != previous:
            self.sysctl.write_text(f"{previous}\n")
            log.info("vm.memfd_noexec restored to %d", previous)
        self.saved.unlink(missing_ok=True)
        self.applied = False

    def state(self, wanted: bool) -> tuple[bool, str]:
        """(healthy, detail) for the module state."""
        if self.error:
            return False, self.error[:255]
        if not wanted:
            return True, "disabled by policy"
        try:
            value = self.read()
        except (OSError, ValueError) as exc:
            return False, f"cannot read vm.memfd_noexec: {exc}"[:255]
        if value != HARDENED:
            return False, f"vm.memfd_noexec is {value}, not {HARDENED}"
        return True, "vm.memfd_noexec=2: no executable memfds"

"""The agent's side of the actions (mixed into ``trapsd.daemon.Agent``): what executors call,
the local quarantine verbs of the control socket, and uninstall."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from trapsapi.agent_client import UploadKind
from trapsapi.errors import TrapsError
from trapsapi.wire_actions import ForensicUpload, LogUpload
from trapsd.actions import quarantine
from trapsd.actions.dispatcher import Dispatcher
from trapsd.checkin import Comms
from trapsd.config import AgentSettings
from trapsd.identity import Identity
from trapsd.policy import Policy

log = logging.getLogger(__name__)
KEEP_ON_UNINSTALL = (quarantine.QUARANTINE_DIR,)
"""Quarantined files are evidence and may be restored by hand: uninstall keeps them."""


class ActionHost:
    settings: AgentSettings
    state_dir: Path
    policy: Policy
    identity: Identity
    comms: Comms | None
    actions: Dispatcher | None = None
    uninstalling: bool = False

    def apply_policy(self, policy: Policy) -> None:
        raise NotImplementedError

    def request_stop(self) -> None:
        raise NotImplementedError

    # --- what the executors use --------------------------------------------------------------
    def checkin_now(self, timeout: float) -> dict[str, Any]:
        if self.comms is None:
            return {"ok": False, "error": "the ESM link is not running"}
        return self.comms.checkin_now(timeout)

    def servers(self) -> list[str]:
        return list(self.identity.servers)

    def refresh_local_blocks(self) -> None:
        """Apply the policy again so that the quarantine's local blocks take effect now."""
        self.apply_policy(self.policy)

    def upload(
        self, action_id: str, kind: UploadKind, uploads: Iterable[LogUpload | ForensicUpload]
    ) -> Iterator[dict[str, Any]]:
        """Upload files an action asked for, one request each on one connection; yields each
        acknowledgement (lazily: the caller reads the next file only when asked)."""
        assert self.actions is not None
        client = self.actions.client()
        try:
            for upload in uploads:
                yield client.upload_action_file(action_id, kind, upload)
        finally:
            client.close()

    def uninstall(self) -> None:
        log.warning("uninstall requested by the ESM: stopping and removing the agent's state")
        self.uninstalling = True
        self.request_stop()

    # --- local verbs ---------------------------------------------------------------------------
    def control_quarantine(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return quarantine_verb(self.state_dir, request)
        finally:
            if request.get("cmd") == "quarantine-restore":
                self.refresh_local_blocks()


def quarantine_verb(state_dir: Path, request: dict[str, Any]) -> dict[str, Any]:
    """``quarantine-list`` / ``quarantine-restore`` (by the daemon, or directly when it is
    not running)."""
    if request.get("cmd") == "quarantine-list":
        return {"ok": True, "entries": quarantine.list_entries(state_dir)}
    try:
        entry = quarantine.restore(state_dir, str(request.get("id", "")))
    except TrapsError as exc:
        return {"ok": False, "error": exc.message, "exit_code": 1}
    except OSError as exc:
        return {"ok": False, "error": f"restore failed: {exc}", "exit_code": 1}
    return {"ok": True, "restored": entry}


def remove_state(state_dir: Path) -> None:
    """What uninstall leaves: nothing of the agent but the quarantine."""
    for child in state_dir.iterdir():
        if child.name in KEEP_ON_UNINSTALL:
            continue
        try:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        except OSError as exc:
            log.error("uninstall: cannot remove %s: %s", child, exc)

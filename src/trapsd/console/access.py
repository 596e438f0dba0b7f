"""Who may open the console: the policy's console visibility (visible, root_only or hidden).

The control socket already admits only root or the configured group; the policy can narrow
that further. The applied policy (``policy.json``, root-only) is read defensively: the
setting may be ``agent.console``, ``agent.console_visibility`` or a top-level ``console``.
A user who cannot read the file gets the value the daemon reports in its status.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trapsapi.errors import ExitCode, TrapsError

VISIBLE = "visible"
ROOT = "root"
HIDDEN = "hidden"
POLICY_FILE = "policy.json"


class ConsoleForbidden(TrapsError):
    exit_code = ExitCode.AUTH


def visibility(policy: Mapping[str, Any] | None) -> str:
    """The console visibility a policy asks for; an unrecognised value means root only."""
    if not isinstance(policy, Mapping):
        return VISIBLE
    agent = policy.get("agent")
    value: Any = None
    if isinstance(agent, Mapping):
        value = agent.get("console", agent.get("console_visibility"))
    if value is None:
        value = policy.get("console")
    if isinstance(value, Mapping):  # {"visibility": "root"}
        value = value.get("visibility")
    if value is None:
        return VISIBLE
    text = str(value).strip().lower().replace("-", "_")
    text = ROOT if text == "root_only" else text  # the ESM's spelling of "root"
    return text if text in (VISIBLE, ROOT, HIDDEN) else ROOT


def _from_file(state_dir: Path) -> str | None:
    """The visibility in policy.json, or None when this user cannot tell."""
    try:
        data = json.loads((state_dir / POLICY_FILE).read_bytes())
    except FileNotFoundError:
        return VISIBLE  # no policy applied yet: the socket's own access rules only
    except (OSError, ValueError):
        return None
    return visibility(data)


def check_access(state_dir: Path, euid: int, ask_status: Callable[[], Mapping[str, Any]]) -> str:
    """The visibility if this user may open the console; :class:`ConsoleForbidden` otherwise."""
    mode = _from_file(state_dir)
    if mode is None:
        try:
            reported = ask_status().get("console")
        except TrapsError:
            reported = None
        mode = None if reported is None else visibility({"console": reported})
    if mode is None:
        if euid == 0:
            mode = ROOT
        else:
            raise ConsoleForbidden(
                f"cannot check the console visibility ({state_dir / POLICY_FILE} unreadable, "
                "and the daemon does not report it): run as root"
            )
    if mode == HIDDEN:
        raise ConsoleForbidden("the local console is hidden by the policy of this agent")
    if mode == ROOT and euid != 0:
        raise ConsoleForbidden("the local console is limited to root by the policy of this agent")
    return mode

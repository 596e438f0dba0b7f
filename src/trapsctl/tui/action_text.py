"""Actions as readable text: per-state progress counts, the target, each agent's result."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.text import Text

from trapsctl.output import printable
from trapsctl.tui.cells import ago, field_lines, timestamp
from trapsctl.tui.client import Obj

STATES = [
    ("pending", "P", "dim"),
    ("delivered", "D", "cyan"),
    ("succeeded", "S", "green"),
    ("failed", "F", "red"),
    ("expired", "E", "yellow"),
    ("cancelled", "C", "magenta"),
]
"""Each state of an action on one agent: its letter in the list and its colour."""
STATE_STYLE = {name: style for name, _, style in STATES}
LABELS = {
    "checkin": "check in",
    "scan": "scan",
    "retrieve_logs": "get logs",
    "retrieve_forensics": "forensics",
    "kill_process": "kill",
    "clear_history": "clear hist",
}


def progress_cell(progress: Any) -> Text:
    """``P3 D1 S5 F1``: non-zero states only, coloured (the detail pane spells them out)."""
    counts = progress if isinstance(progress, dict) else {}
    out = Text(no_wrap=True, overflow="ellipsis")
    for name, letter, style in STATES:
        n = int(counts.get(name) or 0)
        if n:
            if out:
                out.append(" ")
            out.append(f"{letter}{n}", style=style)
    return out if out else Text("-", style="dim")


def progress_text(progress: Any) -> Text:
    """``3 pending · 1 delivered · 5 succeeded · 1 failed · 0 expired``."""
    counts = progress if isinstance(progress, dict) else {}
    out = Text()
    for index, (name, _, style) in enumerate(STATES):
        n = int(counts.get(name) or 0)
        if name == "cancelled" and not n:
            continue
        if index:
            out.append(" · ")
        out.append(f"{n} {name}", style=style if n else "dim")
    return out


def state_of(action: Obj) -> Text:
    if action.get("cancelled"):
        return Text("cancelled", style="magenta")
    if action.get("done"):
        return Text("done", style="green")
    return Text("running", style="cyan")


def cancellable(action: Obj) -> bool:
    """Only pending deliveries can be cancelled (delivered ones run to their end)."""
    progress = action.get("progress") or {}
    return not action.get("cancelled") and int(progress.get("pending") or 0) > 0


def target_text(target: Any, hostnames: Mapping[str, str]) -> str:
    """``web-01`` (an agent, by name when known), ``label db``, ``hostname web-*``."""
    if not isinstance(target, dict):
        return printable(target)
    if target.get("agent_id"):
        agent_id = str(target["agent_id"])
        return printable(hostnames.get(agent_id) or f"agent {agent_id[:8]}…")
    if target.get("label"):
        return f"label {printable(target['label'])}"
    query = target.get("query") or {}
    return " ".join(f"{printable(k)} {printable(v)}" for k, v in query.items()) or "-"


def compact(value: Any, width: int = 200) -> str:
    text = printable(json.dumps(value, sort_keys=True)) if value else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def action_text(action: Obj, hostnames: Mapping[str, str], now: datetime) -> Text:
    out = Text()
    out.append(printable(action.get("type")).replace("_", " "), style="bold")
    out.append("  ")
    out.append(state_of(action))
    out.append("\n")
    created = f"{timestamp(action.get('created_at'))} ({ago(action.get('created_at'), now).plain})"
    out.append(
        field_lines(
            [
                ("Target", target_text(action.get("target"), hostnames)),
                ("Agents", printable(action.get("agents"))),
                ("Progress", progress_text(action.get("progress"))),
                ("Params", Text(compact(action.get("params")) or "-", overflow="fold")),
                ("Created", f"{created} by {printable(action.get('created_by'))}"),
                ("Expires", timestamp(action.get("expires_at"))),
                ("Comment", Text(printable(action.get("comment")) or "-", overflow="fold")),
                ("Action", printable(action.get("id"))),
            ]
        )
    )
    return out


MAX_DELIVERIES = 500
"""Agents listed on the action's screen (an action on 10k agents lists the first ones)."""


def deliveries_text(deliveries: list[Obj], now: datetime) -> Text:
    """One line per agent: host, state, when it finished, its result or why not."""
    out = Text()
    if not deliveries:
        return Text("No agent matched the target.", style="dim")
    out.append(f"{'HOST':<20} {'STATE':<10} {'FINISHED':<9} RESULT\n", style="bold")
    for index, row in enumerate(deliveries[:MAX_DELIVERIES]):
        if index:
            out.append("\n")
        state = printable(row.get("state"))
        out.append(f"{printable(row.get('hostname'))[:19]:<20} ")
        out.append(f"{state:<10} ", style=STATE_STYLE.get(state, ""))
        finished = row.get("finished_at")
        out.append(f"{ago(finished, now).plain if finished else '-':<9} ")
        result = compact(row.get("result"), 160)
        detail = printable(row.get("detail"))
        out.append(" · ".join(part for part in (result, detail) if part) or "-")
        if row.get("has_logs"):
            out.append("  (logs uploaded)", style="dim")
    if len(deliveries) > MAX_DELIVERIES:
        more = len(deliveries) - MAX_DELIVERIES
        out.append(f"\n… and {more} more agents (trapsctl actions show)", style="dim")
    return out

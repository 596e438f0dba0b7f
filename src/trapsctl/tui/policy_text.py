"""Policies, their history and an agent's explain as readable text (rules flattened to
``malware.mode  prevention`` lines; every value escaped)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from rich.text import Text

from trapsctl.output import printable
from trapsctl.tui.cells import ago, field_lines, timestamp
from trapsctl.tui.client import Obj


def flatten(rules: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"malware": {"mode": "prevention"}}`` as ``[("malware.mode", "prevention")]``."""
    if not isinstance(rules, dict):
        return [(prefix, rules)]
    out: list[tuple[str, Any]] = []
    for key in rules:
        name = f"{prefix}.{key}" if prefix else str(key)
        out.extend(flatten(rules[key], name))
    return out


def value_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(printable(v) for v in value) or "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return printable(value)
    return printable(json.dumps(value))


def targets_text(targets: Any) -> str:
    """``all`` or ``labels db,web · hostnames web-*``, then ``except …``."""
    if not isinstance(targets, dict):
        return printable(targets)

    def part(side: dict[str, Any]) -> str:
        bits = ["all"] if side.get("all") else []
        for key in ("labels", "groups", "hostnames", "os"):
            if side.get(key):
                bits.append(f"{key} {','.join(printable(v) for v in side[key])}")
        return " · ".join(bits)

    text = part(targets.get("include") or {}) or "-"
    excluded = part(targets.get("exclude") or {})
    return f"{text} except {excluded}" if excluded else text


def rules_text(rules: Any) -> Text:
    lines = flatten(rules or {})
    if not lines:
        return Text("no rules: the built-in defaults apply", style="dim")
    width = min(max(len(name) for name, _ in lines) + 2, 40)
    out = Text()
    for index, (name, value) in enumerate(lines):
        if index:
            out.append("\n")
        out.append(f"{printable(name):<{width}}", style="cyan")
        out.append(value_text(value))
    return out


def policy_text(policy: Obj, now: datetime) -> Text:
    version = policy.get("version")
    out = Text()
    out.append(printable(policy.get("name")), style="bold")
    enabled = bool(policy.get("enabled", True))
    out.append("  enabled" if enabled else "  disabled", style="green" if enabled else "red")
    out.append("\n")
    updated = f"{timestamp(policy.get('updated_at'))} ({ago(policy.get('updated_at'), now).plain})"
    out.append(
        field_lines(
            [
                ("Priority", printable(policy.get("priority"))),
                ("Targets", Text(targets_text(policy.get("targets")), overflow="fold")),
                ("Version", printable(version) if version is not None else "-"),
                ("Updated", f"{updated} by {printable(policy.get('updated_by'))}"),
                ("About", Text(printable(policy.get("description")) or "-", overflow="fold")),
            ]
        )
    )
    out.append("\n\nRules\n", style="bold")
    out.append(rules_text(policy.get("rules")))
    return out


def history_text(entries: list[Obj], now: datetime) -> Text:
    """Newest version first: ``v12  2h ago  admin  apply  web (updated), db (created)``."""
    if not entries:
        return Text("No changes recorded.", style="dim")
    out = Text()
    for index, entry in enumerate(entries):
        if index:
            out.append("\n")
        out.append(f"v{printable(entry.get('version')):<5}", style="bold cyan")
        out.append(f"{timestamp(entry.get('at'))} ")
        out.append(f"({ago(entry.get('at'), now).plain})  ", style="dim")
        out.append(f"{printable(entry.get('actor'))}  ", style="yellow")
        out.append(f"{printable(entry.get('action'))}  ")
        changes = entry.get("changes") or {}
        if isinstance(changes, dict) and changes:
            out.append(", ".join(f"{printable(k)} ({value_text(v)})" for k, v in changes.items()))
        else:
            out.append(printable(entry.get("policy")))
    return out


def explain_text(explain: Obj) -> Text:
    """Which policies match the agent, which do not and why, and the winner of each setting."""
    out = Text()
    out.append(printable(explain.get("hostname")), style="bold")
    out.append(f"  policy version {printable(explain.get('version'))}\n")
    labels = ", ".join(printable(v) for v in explain.get("labels") or []) or "-"
    out.append(
        field_lines(
            [
                ("Agent", printable(explain.get("agent_id"))),
                ("OS", printable(explain.get("os"))),
                ("Labels", labels),
                ("Group", printable(explain.get("group") or "-")),
            ]
        )
    )
    out.append("\n\nMatching policies (strongest first)\n", style="bold")
    matched = explain.get("matched") or []
    if not matched:
        out.append("none: the built-in defaults apply", style="dim")
    for index, match in enumerate(matched):
        if index:
            out.append("\n")
        out.append(f"{printable(match.get('name'))}", style="green")
        out.append(f"  priority {printable(match.get('priority'))}")
        out.append(f" · {printable(match.get('specificity'))}: {printable(match.get('matched'))}")
    skipped = explain.get("skipped") or []
    if skipped:
        out.append("\n\nNot applied\n", style="bold")
        for index, skip in enumerate(skipped):
            if index:
                out.append("\n")
            out.append(printable(skip.get("name")), style="dim")
            out.append(f"  {printable(skip.get('reason'))}")
    out.append("\n\nEffective settings (and the rule that won)\n", style="bold")
    settings = explain.get("settings") or []
    width = min(max((len(str(s.get("setting"))) for s in settings), default=10) + 2, 36)
    for index, setting in enumerate(settings):
        if index:
            out.append("\n")
        out.append(f"{printable(setting.get('setting')):<{width}}", style="cyan")
        out.append(value_text(setting.get("value")), style="bold")
        winner = setting.get("policy")
        out.append("  ← ")
        out.append(printable(winner) if winner else "built-in default", style="green")
        reason = setting.get("reason")
        if reason:
            out.append(f" ({printable(reason)})", style="dim")
        for loser in setting.get("losers") or []:
            out.append(f"\n{'':<{width}}  beats ", style="dim")
            out.append(f"{printable(loser.get('policy'))}: {value_text(loser.get('value'))}")
            out.append(f" ({printable(loser.get('reason'))})", style="dim")
    return out

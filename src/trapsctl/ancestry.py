"""An event's process ancestry and forensics reference, for ``events show`` and the dashboard.

The chain is built from what the agent sent: the process itself, its parent (``ppid``,
``parent_path``), then ``details["ancestors"]`` (a list of ``{pid, path, cmdline, user}``,
nearest first) or, failing that, ``details["parent_image"]`` (the starter the restrictions
module names). Nothing is invented: missing links are simply not shown.
"""

from __future__ import annotations

from typing import Any

Row = dict[str, Any]
FORENSICS_KEYS = ("forensics", "forensics_id", "forensic_log", "dump")


def _link(depth: int, pid: Any, path: Any, cmdline: Any = None, user: Any = None) -> Row:
    return {"depth": depth, "pid": pid, "path": path, "cmdline": cmdline or "", "user": user}


def process_chain(event: Row) -> list[Row]:
    """Oldest ancestor first, the event's process last (the order of a tree read top-down)."""
    details = event.get("details") or {}
    chain = [
        _link(
            0, event.get("pid"), event.get("process_path"), event.get("cmdline"), event.get("user")
        )
    ]
    if event.get("ppid") is not None or event.get("parent_path"):
        chain.append(_link(1, event.get("ppid"), event.get("parent_path")))
    ancestors = details.get("ancestors")
    if isinstance(ancestors, list):
        parent = event.get("ppid")
        for item in ancestors:
            if not isinstance(item, dict) or (parent is not None and item.get("pid") == parent):
                continue  # the parent is already the second link
            link = _link(
                0, item.get("pid"), item.get("path"), item.get("cmdline"), item.get("user")
            )
            chain.append(link)
    elif details.get("parent_image") and details["parent_image"] != event.get("parent_path"):
        chain.append(_link(len(chain), None, details["parent_image"]))
    chain.reverse()
    for depth, link in enumerate(chain):
        link["depth"] = depth
    return chain


def tree_lines(event: Row) -> list[str]:
    """The chain as indented lines: ``└─ 4242 /tmp/evil-sleep 5``."""
    lines = []
    for link in process_chain(event):
        label = link["cmdline"] or link["path"] or "?"
        pid = link["pid"] if link["pid"] is not None else "?"
        indent = "   " * link["depth"]
        lines.append(f"{indent}{'└─ ' if link['depth'] else ''}{pid} {label}")
    return lines


def forensics_reference(event: Row) -> str | None:
    details = event.get("details") or {}
    for key in FORENSICS_KEYS:
        if details.get(key):
            return str(details[key])
    return None

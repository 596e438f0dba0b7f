"""Safe text for the console: values come from processes and the server, never markup.

Strings given to a DataTable or a Static are parsed as markup, so every value goes through
:func:`cell` (plain ``Text``, control characters escaped). Imports rich (with Textual).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text

SEVERITY_STYLES = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "informational": "dim",
    "prevented": "green",
    "killed": "green",
    "notified": "yellow",
}
OK_MARK = Text("✓", style="bold green")
BAD_MARK = Text("✗", style="bold red")


def printable(value: Any) -> str:
    """``value`` as one line: None as ``-``, booleans as yes/no, control characters escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def cell(value: Any, style: str = "") -> Text:
    return Text(printable(value), style=style, no_wrap=True, overflow="ellipsis")


def styled(value: Any, short: dict[str, str] | None = None) -> Text:
    """A severity or action in its colour (``short``: shorter labels for narrow columns)."""
    text = printable(value)
    label = (short or {}).get(text, text)
    return Text(label, style=SEVERITY_STYLES.get(text, ""), no_wrap=True)


def mark(healthy: Any) -> Text:
    return OK_MARK.copy() if healthy else BAD_MARK.copy()


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def when(value: Any, now: datetime | None = None) -> str:
    """``2026-11-29 10:00:00Z``, with ``(5m ago)`` when ``now`` is given; ``never`` if unset."""
    moment = parse_time(value)
    if moment is None:
        return "never" if not value else printable(value)
    text = f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}"
    if now is None:
        return text
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return text
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{text} ({seconds // size}{unit} ago)"
    return f"{text} ({seconds}s ago)"


def field_lines(fields: list[tuple[str, Any]], width: int = 14) -> Text:
    """``LABEL  value`` lines (values escaped unless already ``Text``)."""
    out = Text()
    for index, (label, value) in enumerate(fields):
        if index:
            out.append("\n")
        out.append(f"{label:<{width}}", style="bold")
        out.append(value if isinstance(value, Text) else Text(printable(value)))
    return out

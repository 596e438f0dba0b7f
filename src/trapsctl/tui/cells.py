"""Table cells and detail lines as rich ``Text``: never markup, control characters escaped.

Every value shown comes from agents or admins: a hostname or command line may hold
``[red]`` or terminal escape sequences. Strings passed to a DataTable or a Static are parsed
as markup, so everything goes through :func:`cell` (plain ``Text`` of the escaped value).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from trapsctl.output import STYLES, printable, short_hash, timestamp

__all__ = ["ago", "cell", "field_lines", "parse_time", "short_hash", "styled", "timestamp"]


def cell(value: Any, style: str = "") -> Text:
    return Text(printable(value), style=style, no_wrap=True, overflow="ellipsis")


def styled(value: Any, short: dict[str, str] | None = None) -> Text:
    """A status-like value (severity, health, verdict …) in its colour (``short``: labels)."""
    text = printable(value)
    label = (short or {}).get(text, text.replace("_", " "))
    return Text(label, style=STYLES.get(text, ""), no_wrap=True)


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ago(value: Any, now: datetime) -> Text:
    """``42s ago``, ``5m ago``, ``3h ago``, ``2d ago``, or ``never``."""
    moment = parse_time(value)
    if moment is None:
        return Text("never", style="dim")
    seconds = int((now - moment).total_seconds())
    if seconds < 0:
        return Text("just now")
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return Text(f"{seconds // size}{unit} ago")
    return Text(f"{seconds}s ago")


def field_lines(fields: list[tuple[str, Text | str]], width: int = 10) -> Text:
    """``LABEL     value`` lines for a detail pane (values already safe ``Text``)."""
    out = Text()
    for index, (label, value) in enumerate(fields):
        if index:
            out.append("\n")
        out.append(f"{label:<{width}}", style="bold")
        out.append(value if isinstance(value, Text) else cell(value))
    return out

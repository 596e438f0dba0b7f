"""Time helpers: one clock (UTC, aware) and the ``since`` syntax of the list filters."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_RELATIVE = re.compile(r"^\s*(\d{1,9})\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``30s``, ``15m``, ``1h``, ``7d``, ``2w`` ago, or an ISO-8601 time (naive = UTC)."""
    match = _RELATIVE.match(text)
    if match:
        seconds = int(match.group(1)) * _UNITS[match.group(2).lower()]
        return (now or utcnow()) - timedelta(seconds=seconds)
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise ValueError("expected an ISO-8601 time or a duration like 30s, 15m, 1h, 7d") from None
    return as_utc(value)

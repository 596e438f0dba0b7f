"""Durations (``90s``, ``15m``, ``1h30m``, ``7d``, ``2w``, ``3600``) and ``--since`` times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import typer

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
_DURATION = re.compile(r"(?:\d+[smhdw])+")


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a plain number of seconds or number+unit parts (s m h d w)."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    elif _DURATION.fullmatch(value):
        seconds = sum(int(n) * UNIT_SECONDS[unit] for n, unit in _PART.findall(value))
    else:
        raise typer.BadParameter(
            f"{text!r} is not a duration: use seconds (3600) or units such as 90s, 15m, 1h, 7d, 2w"
        )
    if seconds <= 0:
        raise typer.BadParameter(f"{text!r}: the duration must be positive")
    return seconds


def parse_since(text: str, now: datetime | None = None) -> str:
    """An ISO 8601 UTC time: ``now`` minus a duration, or an ISO date/time (local if no zone)."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if value[:1].isdigit() and (value.isdigit() or _DURATION.fullmatch(value.lower())):
        moment = now - timedelta(seconds=parse_duration(value))
    else:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r} is neither a duration (1h, 7d) nor an ISO 8601 time "
                "(2026-11-29 or 2026-11-29T08:00:00Z)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a time without a zone is local time
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")

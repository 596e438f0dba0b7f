"""Durations for --expires-in and times for --since."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import typer

from trapsctl.durations import parse_duration, parse_since

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("90s", 90),
        ("15m", 900),
        ("1h", 3600),
        ("1h30m", 5400),
        ("7d", 604800),
        ("2w", 1209600),
        (" 1D ", 86400),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "1y", "h", "1.5h", "-1h", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("1h", "2026-11-29T11:00:00Z"),
        ("7d", "2026-11-22T12:00:00Z"),
        ("2026-11-29T08:00:00Z", "2026-11-29T08:00:00Z"),
        ("2026-11-29T09:00:00+01:00", "2026-11-29T08:00:00Z"),
    ],
)
def test_since(text: str, iso: str) -> None:
    assert parse_since(text, NOW) == iso


def test_since_without_a_zone_is_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        assert parse_since("2026-11-29 09:00", NOW) == "2026-11-29T08:00:00Z"
        assert parse_since("2026-11-29", NOW) == "2026-11-28T23:00:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["yesterday", "1y", "2026-13-01"])
def test_bad_since(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_since(text, NOW)

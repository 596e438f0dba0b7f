"""SVG snapshots of the console's overview and events tabs at 80x24 and 160x48.

Review with ``pytest tests/trapsd/console --snapshot-report``; accept with ``--snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from console_fixtures import fixture_console, settle

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
Compare = Callable[..., bool]


def keys_then_settle(*keys: str) -> Callable[[Any], Awaitable[None]]:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_console_overview(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap_compare(fixture_console(), terminal_size=size, run_before=keys_then_settle())


@pytest.mark.parametrize("size", SIZES)
def test_console_events(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap_compare(fixture_console(), terminal_size=size, run_before=keys_then_settle("2"))

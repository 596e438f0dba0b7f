"""SVG snapshots of every dashboard screen at 80x24 and 160x48 (fixture data, frozen clock).

Review changes with ``pytest tests/trapsctl/tui --snapshot-report``; accept them with
``--snapshot-update`` (then look at the SVGs in __snapshots__/ before committing).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from textual.widgets import Input
from tui_fixtures import FakeClient, fixture_app, settle

from trapsapi.errors import Unreachable

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
Compare = Callable[..., bool]


def keys_then_settle(*keys: str) -> Callable[[Any], Awaitable[None]]:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        for box in pilot.app.query(Input):
            box.cursor_blink = False  # a blinking cursor would make the SVG depend on timing
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run_before


def snap(snap_compare: Compare, size: tuple[int, int], keys: Iterable[str] = ()) -> bool:
    return snap_compare(fixture_app(), terminal_size=size, run_before=keys_then_settle(*keys))


@pytest.mark.parametrize("size", SIZES)
def test_agents(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["down", "down"])


@pytest.mark.parametrize("size", SIZES)
def test_events(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["2"])


@pytest.mark.parametrize("size", SIZES)
def test_hashes(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["3"])


@pytest.mark.parametrize("size", SIZES)
def test_filtered_agents(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["slash", "d", "i", "s"])


@pytest.mark.parametrize("size", SIZES)
def test_block_confirmation(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["2", "b"])


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["question_mark"])


@pytest.mark.parametrize("size", SIZES)
def test_unreachable(snap_compare: Compare, size: tuple[int, int]) -> None:
    client = FakeClient()
    client.fail = Unreachable("http://esm.example.org:8443: connection refused")
    app = fixture_app(client, refresh_interval=5)  # the timer only repeats the same failure
    assert snap_compare(app, terminal_size=size, run_before=keys_then_settle())


@pytest.mark.parametrize("size", SIZES)
def test_event_details(snap_compare: Compare, size: tuple[int, int]) -> None:
    """Enter on the second event: fields, verdict, process tree, triage keys."""
    assert snap(snap_compare, size, ["2", "down", "enter"])


@pytest.mark.parametrize("size", SIZES)
def test_triage_dialog(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["2", "t"])

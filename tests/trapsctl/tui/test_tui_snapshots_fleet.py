"""SVG snapshots of the Policies, Actions and Servers tabs and their screens and dialogs, at
80x24 and 160x48 (fixture data, frozen clock). Review and accept as in test_tui_snapshots.py."""

from __future__ import annotations

import pytest
from test_tui_snapshots import SIZES, Compare, snap


@pytest.mark.parametrize("size", SIZES)
def test_policies(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["4"])


@pytest.mark.parametrize("size", SIZES)
def test_policy_rules(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["4", "down", "enter"])


@pytest.mark.parametrize("size", SIZES)
def test_policy_history(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["4", "down", "h"])


@pytest.mark.parametrize("size", SIZES)
def test_explain(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["down", "down", "x"])


@pytest.mark.parametrize("size", SIZES)
def test_actions(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["5"])


@pytest.mark.parametrize("size", SIZES)
def test_action_details(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["5", "enter"])


@pytest.mark.parametrize("size", SIZES)
def test_cancel_confirmation(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["5", "c"])


@pytest.mark.parametrize("size", SIZES)
def test_isolate_marked_agents(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["space", "space", "i"])


@pytest.mark.parametrize("size", SIZES)
def test_kill_dialog_with_a_bad_pid(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["k", "x", "enter"])


@pytest.mark.parametrize("size", SIZES)
def test_servers(snap_compare: Compare, size: tuple[int, int]) -> None:
    assert snap(snap_compare, size, ["6"])

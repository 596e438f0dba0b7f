"""The benchmark tools must keep working: a tiny simulated fleet against the real server."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from sim import simulate


def test_simulated_fleet_checks_in_without_errors(
    live_esm: Any, admin: Any, tmp_path: Path
) -> None:
    token = admin.create_token(label="sim", max_uses=30)["token"]
    store = tmp_path / "fleet.json"
    result = simulate(
        live_esm.url, token, 30, interval=1.0, duration=3.0, events_per_s=20, store=store
    )
    assert result["errors"] == {}
    assert result["checkins"] >= 30
    assert result["events"] > 0
    agents = admin.list_agents(limit=100)
    assert agents["count"] == 30
    again = simulate(live_esm.url, token, 30, interval=1.0, duration=1.0, store=store)
    assert again["errors"] == {}  # resumed from the stored credentials: no new enrollment
    assert admin.list_agents(limit=100)["count"] == 30

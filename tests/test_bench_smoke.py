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


def test_large_table_bench_runs_end_to_end_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """bench/big_tables.py on a few thousand rows: load, serve, every query, retention."""
    import big_tables

    figures = big_tables.measure(tmp_path, 3000)
    assert figures["events"] == 3000 and figures["fill"]["rows_per_s"] > 0
    assert set(figures["queries_ms"]) >= {"newest page", "one agent", "counts, 24 h by hour"}
    assert "300 deleted" in figures["retention"]
    text = "\n".join(big_tables.report_lines(figures))
    assert "| newest page |" in text


def test_agent_bench_report_rows() -> None:
    import agent_report

    agent = {
        "exec_warm_base_ms": 0.5,
        "exec_warm_agent_ms": 0.52,
        "exec_cold_base_ms": 1.0,
        "exec_cold_agent_ms": 1.4,
        "idle_cpu_percent": 0.01,
        "idle_seconds": 60,
        "host_busy_percent": 3.0,
        "visible_p50_s": 0.1,
        "visible_p95_s": 0.2,
        "visible_count": 20,
    }
    rows = agent_report.report_lines({"install_mb": 2.4, "agent": agent})
    assert len(rows) == 5 and all(row.startswith("| ") for row in rows)
    assert "1.04 | ≤ 1.10 | yes" in rows[1]
    cycles = agent_report.report_lines({"agent": {**agent, "exec_warm_ratios": [1.2, 1.08, 1.1]}})
    assert "(median of the ratios 1.20, 1.08, 1.10) | 1.10 | ≤ 1.10 | yes" in cycles[0]
    skipped = agent_report.report_lines({"install_mb": 2.4, "agent": {"skipped": "needs root"}})
    assert "skipped: needs root" in skipped[1]


def test_console_bench_lists_completes_and_draws_the_dashboard(tmp_path: Path) -> None:
    """bench/ctl_speed.py with 20 agents: the listing, both completions, the dashboard in a pty."""
    import ctl_speed

    figures = ctl_speed.measure_ctl_speed(tmp_path, agents=20, runs=2)
    assert figures["agents"] == 20 and figures["median_ms"] > 0
    assert figures["complete_command_ms"] > 0 and figures["complete_agent_cached_ms"] > 0
    assert 0 < figures["dashboard_first_frame_ms"] <= figures["dashboard_agents_ms"]
    assert "first frame" in ctl_speed.report_line(figures)


def test_wake_bench_delivers_every_broadcast_and_leaves_the_collector_as_it_was(
    tmp_path: Path,
) -> None:
    """bench/run.py's wake measurement with a small fleet on one real esmd (SQLite)."""
    import asyncio
    import gc

    from run import measure_wake

    policy = asyncio.get_event_loop_policy()
    try:
        result = measure_wake(tmp_path, 40)
    finally:
        asyncio.set_event_loop_policy(policy)  # the simulator installs uvloop's
    assert result["errors"] == {} and result["held"] == 40
    for kind in ("action", "policy"):
        assert result[f"{kind}_delivered"] == 40, result
        assert result[f"{kind}_p95_ms"] > 0
    assert result["simulator_gc_pauses_s"] == 0  # measured with the collector off
    assert gc.isenabled() and gc.get_freeze_count() == 0

"""The agent benchmark's rows in docs/benchmarks.md: each figure beside its goal."""

from __future__ import annotations

import statistics
from typing import Any

EXEC_RATIO_GOAL = 1.10
IDLE_CPU_GOAL_PERCENT = 0.05
INSTALL_GOAL_MB = 30.0
VISIBLE_P95_GOAL_S = 1.0


def report_lines(figures: dict[str, Any]) -> list[str]:
    """Markdown rows for docs/benchmarks.md (the table of bench/run.py)."""
    lines = []
    install = figures.get("install_mb")
    if install is not None:
        lines.append(
            f"| agent install size (wheel + psutil, no interpreter) | {install:.1f} MB | "
            f"goal {INSTALL_GOAL_MB:.0f} MB | {install / INSTALL_GOAL_MB:.2f} | ≤ 1.00 | "
            f"{'yes' if install <= INSTALL_GOAL_MB else 'no'} |"
        )
    agent = figures.get("agent") or {}
    if "skipped" in agent:
        lines.append(
            f"| agent exec latency, idle CPU, event visibility | skipped: "
            f"{agent['skipped']} | | | | |"
        )
        return lines
    if not agent:
        return lines
    ratios = agent.get("exec_warm_ratios")
    warm = (
        statistics.median(ratios)
        if ratios
        else agent["exec_warm_agent_ms"] / agent["exec_warm_base_ms"]
    )
    cold = agent["exec_cold_agent_ms"] / agent["exec_cold_base_ms"]
    lines += [
        f"| exec of an allowed, known binary with the agent | {agent['exec_warm_agent_ms']:.2f} ms"
        f" | {agent['exec_warm_base_ms']:.2f} ms without{_cycles(ratios)} | {warm:.2f}"
        f" | ≤ {EXEC_RATIO_GOAL:.2f}"
        f" | {'yes' if warm <= EXEC_RATIO_GOAL else 'no'} |",
        f"| exec of a never-seen binary (hashed and judged) | {agent['exec_cold_agent_ms']:.2f} ms"
        f" | {agent['exec_cold_base_ms']:.2f} ms without | {cold:.2f} | (informational) | - |",
    ]
    idle = figures.get("idle") or agent
    if "idle_cpu_percent" in idle:
        lines.append(idle_line(idle))
    if "visible_p95_s" in agent:
        p95 = agent["visible_p95_s"]
        met = "yes" if p95 <= VISIBLE_P95_GOAL_S else "no"
        lines.append(
            f"| blocked exec → event listed by the admin API, p95 of {agent['visible_count']} |"
            f" {p95:.2f} s (p50 {agent['visible_p50_s']:.2f} s) | goal {VISIBLE_P95_GOAL_S} s"
            f" | {p95 / VISIBLE_P95_GOAL_S:.2f} | ≤ 1.00 | {met} |"
        )
    return lines


def _cycles(ratios: list[float] | None) -> str:
    return f" (median of the ratios {', '.join(f'{r:.2f}' for r in ratios)})" if ratios else ""


def idle_line(idle: dict[str, Any]) -> str:
    """The idle CPU row: the total, with the host's work the agent handled meanwhile."""
    met = "yes" if idle["idle_cpu_percent"] <= IDLE_CPU_GOAL_PERCENT else "no"
    during = idle.get("during", "")
    return (
        f"| trapsd idle CPU over {idle['idle_seconds']:.0f} s{during} | "
        f"{idle['idle_cpu_percent']:.3f} % of a core | host {idle['host_busy_percent']:.0f} % "
        f"busy meanwhile; the agent judged {idle.get('idle_exec_events', '?')} execs and followed "
        f"{idle.get('idle_process_events', '?')} process events | - | "
        f"≤ {IDLE_CPU_GOAL_PERCENT} % | {met} |"
    )


def idle_thread_text(idle: dict[str, Any]) -> str:
    threads = idle.get("idle_threads") or {}
    shown = ", ".join(f"{name} {value:.3f} %" for name, value in threads.items())
    return f"Idle CPU by thread (% of a core): {shown or 'none measurable (0 ticks)'}."

"""Agent benchmarks: exec latency with and without trapsd, idle CPU, install size, and the
time from a blocked execution to its event being visible through the admin API.

Run alone (`python bench/agent_bench.py --idle-seconds 600`) or from `make bench`. Exec
latency and idle CPU need root (fanotify); without it they are skipped with the reason.
Each figure is a ratio against the same machine in the same run, or an absolute time with
its goal; the whole host's other work shows up in idle CPU, so the report says how busy the
host was.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

from agent_report import report_lines
from localrun import describe

from trapsapi.admin_client import AdminClient

ROOT = Path(__file__).resolve().parent.parent
EXEC_CYCLES = 5
"""Times the exec benchmark measures without and with the agent, alternately."""
WARM_ROUNDS = 20
TRUE = Path(shutil.which("true") or "/bin/true")
TICKS = os.sysconf("SC_CLK_TCK")


AGENT_ENV = {"PYTHONOPTIMIZE": "2"}
"""As packaging/systemd/trapsd.service runs the agent (no docstrings in memory: -1 MB RSS)."""


def start_agent(programs: Any, *args: str) -> Any:
    """``trapsd run …`` as the systemd unit starts it (its environment)."""
    saved = programs.env
    programs.env = {**(saved if saved is not None else os.environ), **AGENT_ENV}
    try:
        return programs.start("trapsd", "run", *args)
    finally:
        programs.env = saved


def _copies(directory: Path, count: int) -> list[tuple[Path, str]]:
    """Copies of /bin/true with unique bytes: each has its own SHA-256 (a new file)."""
    import hashlib

    original = Path(shutil.which("true") or "/bin/true").read_bytes()
    made = []
    for n in range(count):
        path = directory / f"bench-true-{n}"
        path.write_bytes(original + b"\0traps-bench-" + uuid.uuid4().hex.encode())
        path.chmod(0o755)
        made.append((path, hashlib.sha256(path.read_bytes()).hexdigest()))
    return made


def exec_seconds(paths: list[Path], rounds: int = 1) -> list[float]:
    """Wall time of each spawn + wait of ``paths`` (in order, ``rounds`` times)."""
    times = []
    for _ in range(rounds):
        for path in paths:
            started = time.perf_counter()
            pid = os.posix_spawn(str(path), [str(path)], {})
            os.waitpid(pid, 0)
            times.append(time.perf_counter() - started)
    return times


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def thread_ticks(pid: int) -> dict[int, int]:
    """CPU ticks (utime + stime) of each thread of ``pid``, by native thread id."""
    ticks = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the thread ended meanwhile
        ticks[int(task.name)] = int(fields[11]) + int(fields[12])
    return ticks


def thread_wakeups(pid: int) -> dict[int, int]:
    """Voluntary context switches of each thread: one per time it slept and was woken."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    out[int(task.name)] = int(line.split()[1])
        except OSError:
            continue
    return out


def agent_status(state: Path) -> dict[str, Any]:
    """`trapsd status` of the running agent ({} if it does not answer)."""
    from trapsd.control import call

    try:
        status: dict[str, Any] = call(state, {"cmd": "status"}, 5.0)["status"]
    except Exception:  # not answering: the figures go without names and counts
        return {}
    return status


def host_events(status: dict[str, Any]) -> tuple[int, int]:
    """(exec-permission events judged, process events seen) so far by the agent."""
    sensor = status.get("sensor_stats") or {}
    behaviour = status.get("behaviour_stats") or {}
    return int(sensor.get("events", 0)), int(behaviour.get("events", 0))


def per_thread_percent(
    before: dict[int, int], after: dict[int, int], names: dict[int, str], seconds: float
) -> dict[str, float]:
    """% of a core per thread name over the window (threads that used nothing left out)."""
    out: dict[str, float] = {}
    for tid, value in after.items():
        used = value - before.get(tid, 0)
        if used:
            name = names.get(tid, f"tid {tid}")
            out[name] = out.get(name, 0.0) + 100.0 * used / TICKS / seconds
    return dict(sorted(out.items(), key=lambda item: -item[1]))


def _host_ticks() -> tuple[int, int]:
    """(busy, total) ticks of the whole host: how busy it was during an idle figure."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


@dataclass
class BenchAgent:
    """An enrolled `trapsd run` of a fresh ESM that the exec benchmark stops and starts again."""

    admin: AdminClient
    programs: Any
    process: Any
    agent_id: str
    state: Path

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self.programs.processes.remove(self.process)  # stopped on purpose: not a failure

    def start(self) -> None:
        self.process = start_agent(self.programs, "--state-dir", str(self.state))
        self.programs.wait_for(
            "the agent's sensors", lambda: agent_status(self.state).get("sensor_stats")
        )


@contextmanager
def running_agent(work: Path, name: str = "esm-agent-bench") -> Iterator[BenchAgent]:
    """A fresh ESM and an enrolled, connected `trapsd run`."""
    from run import running_esm

    with running_esm(work, name) as (port, admin, programs):
        token = admin.create_token(label="agent-bench")["token"]
        state = work / f"agent-{name}"
        enrolled = programs.run(
            "trapsd", "enroll", "--server", f"http://127.0.0.1:{port}",
            "--token-file", "-", "--state-dir", str(state), stdin=token + "\n",
        )  # fmt: skip
        if enrolled.returncode:
            raise SystemExit(f"trapsd enroll: {describe(enrolled)}")
        agent = start_agent(programs, "--state-dir", str(state))
        programs.wait_for("the agent", lambda: admin.list_agents(health="connected")["data"])
        agent_id = json.loads((state / "identity.json").read_text())["agent_id"]
        yield BenchAgent(admin, programs, agent, agent_id, state)


def _warm_median(rounds: int = WARM_ROUNDS) -> float:
    """Median wall time of a spawn + wait of /bin/true (50 times ``rounds``)."""
    return statistics.median(exec_seconds([TRUE] * 50, rounds))


def measure_exec_and_events(work: Path, idle_seconds: float = 0.0) -> dict[str, Any]:
    """Exec latency without and with the agent, event visibility (and idle CPU if asked).

    The warm exec ratio alternates: without, with, without, ... (the agent stopped and started
    again, ``EXEC_CYCLES`` times); each cycle's time with the agent is divided by the mean of
    the times without it just before and after, and the figure is the median of those ratios.
    The host's own speed drifts by more than the agent's cost between two minutes (0.48-0.75
    ms for the same spawn), so one time with against one without would measure the drift.
    """
    if os.geteuid() != 0:
        return {"skipped": "needs root (fanotify exec blocking)"}
    scratch = Path(tempfile.mkdtemp(prefix="traps-exec-", dir="/var/tmp"))
    try:
        for name in ("without", "with", "evil"):
            (scratch / name).mkdir()
        cold_without = _copies(scratch / "without", 150)
        exec_seconds([TRUE] * 50, 2)  # page cache, dynamic loader
        without = [_warm_median()]
        base_cold = exec_seconds([p for p, _ in cold_without])
        with_agent: list[float] = []
        with running_agent(work) as agent:
            idle: dict[str, Any] = {}
            if idle_seconds:  # idle first: later work would still be finishing (forensics)
                time.sleep(5)
                idle = measure_idle(agent.pid, agent.state, idle_seconds)
            cold_with = _copies(scratch / "with", 150)
            agent_cold = exec_seconds([p for p, _ in cold_with])
            visible = _event_visibility(agent.admin, agent.agent_id, agent.state, scratch / "evil")
            for cycle in range(EXEC_CYCLES):
                if cycle:
                    agent.start()
                exec_seconds([TRUE] * 50, 2)  # the agent learns /bin/true's verdict, marks it
                time.sleep(1.5)
                with_agent.append(_warm_median())
                agent.stop()
                without.append(_warm_median())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratios = [with_agent[n] / ((without[n] + without[n + 1]) / 2) for n in range(len(with_agent))]
    return {
        "exec_warm_base_ms": 1000 * statistics.median(without),
        "exec_warm_agent_ms": 1000 * statistics.median(with_agent),
        "exec_warm_ratios": [round(r, 3) for r in ratios],
        "exec_cold_base_ms": 1000 * statistics.median(base_cold),
        "exec_cold_agent_ms": 1000 * statistics.median(agent_cold),
        **idle,
        **visible,
    }


class IdleWindow:
    """The agent's CPU over a window of doing nothing, in total and by thread.

    Other work on the host is not nothing to the agent: it judges every exec and follows
    every fork, so the figure comes with the number of those it handled meanwhile, and is an
    upper bound of what the agent costs on a quiet host. :meth:`start` then :meth:`finish`
    (after the window); ``bench/run.py`` lets the window run beside the server benchmarks.
    """

    def __init__(self, pid: int, state: Path) -> None:
        self.pid, self.state = pid, state

    def start(self) -> None:
        self.events0 = host_events(agent_status(self.state))
        self.cpu0, self.ticks0 = cpu_seconds(self.pid), thread_ticks(self.pid)
        self.wakeups0 = thread_wakeups(self.pid)
        self.host0, self.started = _host_ticks(), time.monotonic()

    def finish(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.started
        cpu1, ticks1, host1 = cpu_seconds(self.pid), thread_ticks(self.pid), _host_ticks()
        wakeups1 = thread_wakeups(self.pid)
        status = agent_status(self.state)
        execs1, procs1 = host_events(status)
        names = {int(k): str(v) for k, v in (status.get("threads") or {}).items()}
        busy = 100.0 * (host1[0] - self.host0[0]) / max(1, host1[1] - self.host0[1])
        return {
            "idle_cpu_percent": 100.0 * (cpu1 - self.cpu0) / elapsed,
            "idle_seconds": elapsed,
            "host_busy_percent": busy,
            "idle_exec_events": execs1 - self.events0[0],
            "idle_process_events": procs1 - self.events0[1],
            "idle_threads": per_thread_percent(self.ticks0, ticks1, names, elapsed),
            "idle_wakeups_per_min": {
                names.get(tid, f"tid {tid}"): round(
                    60 * (n - self.wakeups0.get(tid, 0)) / elapsed, 1
                )
                for tid, n in sorted(wakeups1.items())
                if n != self.wakeups0.get(tid, 0)
            },
        }


def measure_idle(pid: int, state: Path, seconds: float) -> dict[str, Any]:
    window = IdleWindow(pid, state)
    window.start()
    time.sleep(seconds)
    return window.finish()


@contextmanager
def idle_agent(work: Path, seconds: float) -> Iterator[Callable[[], dict[str, Any]]]:
    """An enrolled agent left alone for ``seconds`` while the caller does other work (that
    must not exec much, nor run another agent); yields a function that waits for the end of
    the window and returns its figures."""
    if os.geteuid() != 0:
        yield lambda: {"skipped": "needs root (fanotify exec blocking)"}
        return
    with running_agent(work, "esm-idle") as agent:
        time.sleep(5)  # start-up work (first process scan, forensics dir) settles
        window = IdleWindow(agent.pid, agent.state)
        window.start()
        ends = time.monotonic() + seconds
        result: dict[str, Any] = {}

        def wait() -> dict[str, Any]:
            if not result:
                time.sleep(max(0.0, ends - time.monotonic()))
                result.update(window.finish())
            return result

        yield wait
        wait()


def _event_visibility(
    admin: AdminClient, agent_id: str, state: Path, scratch: Path
) -> dict[str, Any]:
    """Blocked execution → its event listed by the admin API: p50/p95 over 20 files."""
    samples = _copies(scratch, 20)
    admin.import_hashes("bench", [{"sha256": sha} for _, sha in samples])
    checkin = [sys.executable, "-m", "trapsd", "checkin", "--state-dir", str(state)]
    subprocess.run(checkin, capture_output=True, timeout=60)  # bring the new policy now
    latencies = []
    for path, sha in samples:
        started = time.perf_counter()
        try:
            subprocess.run([str(path)], timeout=10)
        except PermissionError:
            pass
        deadline = started + 10
        while time.perf_counter() < deadline:
            events = admin.list_events(agent_id=agent_id, since="5m", limit=100)["data"]
            if any(e["sha256"] == sha for e in events):
                latencies.append(time.perf_counter() - started)
                break
            time.sleep(0.01)
    if not latencies:
        return {"visible_error": "no event became visible"}
    latencies.sort()
    return {
        "visible_p50_s": statistics.median(latencies),
        "visible_p95_s": latencies[max(0, int(len(latencies) * 0.95) - 1)],
        "visible_count": len(latencies),
    }


def measure_install_size(work: Path) -> float:
    """MB on disk of the agent-only install (the wheel without extras, plus psutil)."""
    wheels, target = work / "wheels", work / "agent-install"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(ROOT)], check=True)
    wheel = next(wheels.glob("traps-*.whl"))
    subprocess.run([*pip, "install", "--target", str(target), str(wheel)], check=True)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    return size / 1e6


def measure(work: Path, idle_seconds: float) -> dict[str, Any]:
    return {
        "install_mb": measure_install_size(work),
        "agent": measure_exec_and_events(work, idle_seconds),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    parser.add_argument(
        "--idle-only", action="store_true", help="only the idle CPU (total and by thread)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="traps-agent-bench-") as tmp:
        if args.idle_only:
            with running_agent(Path(tmp)) as agent:
                time.sleep(5)
                idle = measure_idle(agent.pid, agent.state, args.idle_seconds)
            sys.stdout.write(json.dumps(idle, indent=2) + "\n")
            return 0
        figures = measure(Path(tmp), args.idle_seconds)
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    sys.stdout.write("\n".join(report_lines(figures)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Agent-ID and hostname completion from the ESM: cached per server for a minute, a short
timeout, and never a traceback or a token on disk."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_ctl_live import TRAPSCTL, as_admin, enrolled_agent

from trapsapi.admin_client import AdminClient
from trapsctl.commands import complete

__all__ = ["as_admin"]  # the fixture, re-exported for this module's tests


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _age(path: Path, seconds: float) -> None:
    data = json.loads(path.read_text())
    data["at"] -= seconds
    path.write_text(json.dumps(data))


def test_one_request_per_minute_then_fresh_names(as_admin: AdminClient, cache_home: Path) -> None:
    first = enrolled_agent(as_admin, "web-01")
    assert complete.candidates("") == [first.agent_id]
    cache = complete.cache_file(as_admin.server)
    assert cache.parent.parent == cache_home
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert (as_admin.token or "-") not in cache.read_text()  # names only, never the token

    second = enrolled_agent(as_admin, "web-02")
    assert complete.candidates("", hostnames=True) == ["web-01"]  # within the minute: cached
    _age(cache, complete.CACHE_TTL_S + 1)
    assert complete.candidates("web-0", hostnames=True) == ["web-01", "web-02"]
    assert complete.candidates(second.agent_id[:6]) == [second.agent_id]


def test_a_damaged_cache_is_ignored(as_admin: AdminClient) -> None:
    agent = enrolled_agent(as_admin, "db-01")
    cache = complete.cache_file(as_admin.server)
    cache.parent.mkdir(parents=True)
    for damage in ("not json", '{"at": "x"}', json.dumps({"at": time.time(), "agents": 5})):
        cache.write_text(damage)
        assert complete.candidates("db", hostnames=True) == ["db-01"]
    assert json.loads(cache.read_text())["agents"] == [[agent.agent_id, "db-01"]]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.timeout(30)
def test_a_silent_esm_gives_no_candidates_within_the_timeout(
    silent_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAPSCTL_SERVER", silent_server)
    monkeypatch.setenv("TRAPSCTL_TOKEN", "t")
    monkeypatch.setenv("TRAPSCTL_TIMEOUT", "60")  # completion caps it at 2 s
    start = time.monotonic()
    tab = subprocess.run(
        [TRAPSCTL, "__complete-agents", "--hostnames", "web"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    elapsed = time.monotonic() - start
    assert (tab.returncode, tab.stdout, tab.stderr) == (0, "", "")
    assert complete.COMPLETION_TIMEOUT_S <= elapsed < complete.COMPLETION_TIMEOUT_S + 4


def test_every_agent_id_argument_completes_from_the_esm(
    as_admin: AdminClient, tmp_path: Path
) -> None:
    import os
    import sys

    agent = enrolled_agent(as_admin, "web-07")
    script = Path(__file__).resolve().parents[2] / "completions" / "trapsctl.bash"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for words in (
        "agents show",
        "agents explain",
        "agents label",
        "agents isolate",
        "agents delete",
        "actions list --agent",
        "quarantine list --agent",
        "events list --agent",
    ):
        cword = len(words.split()) + 1
        bash = (
            f"source {script}; COMP_WORDS=(trapsctl {words} '{agent.agent_id[:3]}'); "
            f'COMP_CWORD={cword}; _trapsctl_completion trapsctl; printf "%s\\n" "${{COMPREPLY[@]}}"'
        )
        tab = subprocess.run(
            ["bash", "--norc", "-c", bash], env=env, capture_output=True, text=True, timeout=30
        )
        assert tab.stdout.split() == [agent.agent_id], (words, tab.stdout, tab.stderr)

"""Agent IDs and hostnames for shell completion, from the ESM.

Two ways in: TAB on an agent ID argument (``agents show <TAB>``, ``events list --agent <TAB>``:
Typer re-runs trapsctl, which calls :func:`agent_ids`), and the hidden command
``trapsctl __complete-agents [--hostnames] PREFIX`` for other scripts. Either must be cheap
and never hang a shell: one request (up to 1,000 agents, IDs and hostnames) with a 2-second
timeout, kept for a minute in ``$XDG_CACHE_HOME/trapsctl/`` (per server, readable by the user
only, never a token) so a run of TABs asks the ESM once; at most 200 names; and any failure
(not logged in, ESM down, a damaged cache) gives no candidates and exit 0.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

COMPLETION_TIMEOUT_S = 2.0
CACHE_TTL_S = 60.0
MAX_CANDIDATES = 200
FETCHED = 1000


def cache_file(server: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    digest = hashlib.sha256(server.encode()).hexdigest()[:16]
    return Path(base) / "trapsctl" / f"agents-{digest}.json"


def _cached(server: str, hostname_prefix: str) -> list[list[str]] | None:
    """The (agent ID, hostname) pairs fetched from ``server`` less than CACHE_TTL_S ago
    (None when a hostname is asked for and the fleet was larger than what was kept)."""
    try:
        data = json.loads(cache_file(server).read_text(encoding="utf-8"))
        fresh = 0 <= time.time() - float(data["at"]) < CACHE_TTL_S
        if not fresh or data["server"] != server or (hostname_prefix and not data["complete"]):
            return None
        return [[str(agent_id), str(hostname)] for agent_id, hostname in data["agents"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or damaged: ask the ESM


def _store(server: str, agents: list[list[str]], complete: bool) -> None:
    from trapsctl.config import write_private_file

    try:
        kept = {"server": server, "at": time.time(), "complete": complete, "agents": agents}
        text = json.dumps(kept)
        write_private_file(cache_file(server), text)
    except OSError:
        pass  # a read-only home: completion still works, uncached


def _fetch(
    server: str | None, context: str | None, hostname_prefix: str = ""
) -> tuple[str, list[list[str]]]:
    from trapsapi.admin_client import AdminClient
    from trapsctl.config import env_settings, load_config
    from trapsctl.credentials import resolve_credential

    credential = resolve_credential(load_config(), server, context)
    cached = _cached(credential.server, hostname_prefix)
    if cached is not None:
        return credential.server, cached
    settings = env_settings()
    timeout = min(settings.timeout, COMPLETION_TIMEOUT_S)
    ca_file = str(settings.ca_file) if settings.ca_file else None
    if ca_file is None and credential.context:
        ca_file = credential.context.ca_file
    client = AdminClient(credential.server, credential.token, timeout, ca_file)
    try:
        page = client.list_agents(limit=FETCHED)
        rows = page.get("data", [])
        complete = page.get("count", 0) <= len(rows)
        _store(credential.server, _pairs(rows), complete)
        if hostname_prefix and not complete:
            # A fleet larger than one page: let the ESM find the hostnames (uncached).
            rows = client.list_agents(limit=FETCHED, hostname=hostname_prefix).get("data", [])
    finally:
        client.close()
    return credential.server, _pairs(rows)


def _pairs(rows: list[dict[str, object]]) -> list[list[str]]:
    return [[str(r.get("agent_id", "")), str(r.get("hostname", ""))] for r in rows]


def candidates(prefix: str, hostnames: bool = False) -> list[str]:
    """Agent IDs (or hostnames) starting with ``prefix``, sorted; [] on any failure.

    During completion the root options are not parsed: the server and context come from
    TRAPSCTL_SERVER / TRAPSCTL_CONTEXT or the current context."""
    try:
        server, context = os.environ.get("TRAPSCTL_SERVER"), os.environ.get("TRAPSCTL_CONTEXT")
        hostname_prefix = prefix if hostnames else ""
        _, agents = _fetch(server or None, context or None, hostname_prefix)
    except Exception:  # a completion must never print a traceback into the shell
        return []
    column = 1 if hostnames else 0
    values = {agent[column] for agent in agents if agent[column].startswith(prefix)}
    return sorted(values)[:MAX_CANDIDATES]


def agent_ids(incomplete: str) -> list[str]:
    return candidates(incomplete)


def hostnames(incomplete: str) -> list[str]:
    return candidates(incomplete, hostnames=True)


def complete_agents(
    prefix: Annotated[str, typer.Argument(metavar="PREFIX")] = "",
    by_hostname: Annotated[bool, typer.Option("--hostnames", help="Hostnames, not IDs.")] = False,
) -> None:
    """Agent IDs (or hostnames) starting with PREFIX, one a line."""
    sys.stdout.write("".join(f"{value}\n" for value in candidates(prefix, by_hostname)))

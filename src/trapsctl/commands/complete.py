"""Agent IDs and hostnames for shell completion, from the ESM.

Two ways in: TAB on an agent ID argument (``agents show <TAB>``, ``events list --agent <TAB>``:
Typer re-runs trapsctl, which calls :func:`agent_ids`), and the hidden command
``trapsctl __complete-agents [--hostnames] PREFIX`` for other scripts. Either must be cheap
and never hang a shell: one request, a 2-second timeout, at most 200 names, and any failure
(not logged in, ESM down) gives no candidates and exit 0.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

COMPLETION_TIMEOUT_S = 2.0
MAX_CANDIDATES = 200


def candidates(prefix: str, hostnames: bool = False) -> list[str]:
    """Agent IDs (or hostnames) starting with ``prefix``, sorted; [] on any failure.

    During completion the root options are not parsed: the server and context come from
    TRAPSCTL_SERVER / TRAPSCTL_CONTEXT or the current context."""
    import os

    from trapsapi.admin_client import AdminClient
    from trapsctl.config import env_settings, load_config
    from trapsctl.credentials import resolve_credential

    key = "hostname" if hostnames else "agent_id"
    try:
        server, context = os.environ.get("TRAPSCTL_SERVER"), os.environ.get("TRAPSCTL_CONTEXT")
        credential = resolve_credential(load_config(), server or None, context or None)
        settings = env_settings()
        timeout = min(settings.timeout, COMPLETION_TIMEOUT_S)
        ca_file = str(settings.ca_file) if settings.ca_file else None
        if ca_file is None and credential.context:
            ca_file = credential.context.ca_file
        client = AdminClient(credential.server, credential.token, timeout, ca_file)
        try:
            filters = {"hostname": prefix} if hostnames and prefix else {}
            rows = client.list_agents(limit=1000, **filters).get("data", [])
        finally:
            client.close()
    except Exception:  # a completion must never print a traceback into the shell
        return []
    values = {str(row.get(key)) for row in rows if str(row.get(key, "")).startswith(prefix)}
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

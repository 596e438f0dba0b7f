"""The agent's identity (agent id, secret, server list) and enrollment."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from trapsapi import agent_client
from trapsapi.errors import TrapsError, UsageError
from trapsapi.http import parse_server_url
from trapsapi.wire import EnrollRequest
from trapsd import __version__, hostinfo
from trapsd.files import ensure_private_dir, read_json, write_json

IDENTITY_FILE = "identity.json"


class NotEnrolled(TrapsError):
    pass


@dataclasses.dataclass
class Identity:
    agent_id: str
    agent_secret: str
    servers: list[str]
    enrolled_at: str = ""

    def __repr__(self) -> str:  # keep the secret out of logs and tracebacks
        return f"Identity(agent_id={self.agent_id!r}, servers={self.servers!r})"


def identity_path(state_dir: Path) -> Path:
    return state_dir / IDENTITY_FILE


def load_identity(state_dir: Path) -> Identity:
    path = identity_path(state_dir)
    data = read_json(path)
    if data is None:
        raise NotEnrolled(f"not enrolled: no {path} (run `trapsd enroll` first)")
    try:
        identity = Identity(
            agent_id=str(data["agent_id"]),
            agent_secret=str(data["agent_secret"]),
            servers=[str(s) for s in data["servers"]],
            enrolled_at=str(data.get("enrolled_at", "")),
        )
    except (KeyError, TypeError):
        raise TrapsError(f"{path}: not a trapsd identity file") from None
    if not identity.servers:
        raise TrapsError(f"{path}: the server list is empty")
    return identity


def save_identity(state_dir: Path, identity: Identity) -> None:
    ensure_private_dir(state_dir)
    write_json(identity_path(state_dir), dataclasses.asdict(identity))


def merge_servers(first: Sequence[str], more: Sequence[str]) -> list[str]:
    """``first`` in order, then the URLs of ``more`` not already present (trailing / ignored)."""
    merged: list[str] = []
    seen: set[str] = set()
    for url in [*first, *more]:
        key = url.strip().rstrip("/")
        if key and key not in seen:
            seen.add(key)
            merged.append(key)
    return merged


def parse_servers(text: str) -> list[str]:
    servers = merge_servers(text.split(","), [])
    if not servers:
        raise UsageError("--server: give at least one URL")
    for url in servers:
        parse_server_url(url)
    return servers


def enroll(
    state_dir: Path,
    servers: Sequence[str],
    token: str,
    timeout: float = 10.0,
    ca_file: str | None = None,
    force: bool = False,
) -> Identity:
    """Trade ``token`` for an identity and store it (state dir 0700, file 0600)."""
    path = identity_path(state_dir)
    if path.exists() and not force:
        raise TrapsError(f"already enrolled ({path} exists); use --force to enroll again")
    ensure_private_dir(state_dir)
    request: EnrollRequest = {
        "token": token,
        "hostname": hostinfo.hostname(),
        "os": hostinfo.os_name(),
        "os_version": hostinfo.os_version(),
        "agent_version": __version__,
    }
    reply = agent_client.enroll(servers, request, timeout, ca_file)
    identity = Identity(
        agent_id=reply["agent_id"],
        agent_secret=reply["agent_secret"],
        servers=merge_servers(servers, reply.get("servers") or []),
        enrolled_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    save_identity(state_dir, identity)
    return identity

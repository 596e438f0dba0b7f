"""The agent's identity (agent id, secret, server list) and enrollment."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from trapsapi import agent_client
from trapsapi.errors import TrapsError, UsageError
from trapsapi.http import normalise_pin, parse_server_url
from trapsapi.wire import EnrollRequest
from trapsd import __version__, hostinfo
from trapsd.files import ensure_private_dir, read_json, write_json, write_private

IDENTITY_FILE = "identity.json"
SERVER_CA_FILE = "server-ca.pem"
"""The CA given at enrollment, copied into the state directory so that the agent keeps
trusting exactly it (and not whatever later sits at the original path)."""


class NotEnrolled(TrapsError):
    pass


@dataclasses.dataclass
class Identity:
    agent_id: str
    agent_secret: str
    servers: list[str]
    enrolled_at: str = ""
    ca_file: str = ""
    """The pinned CA bundle (in the state directory), or "" for the system's CAs."""
    pin_sha256: str = ""
    """The pinned SHA-256 of the server certificate, or "" for none."""

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
            ca_file=str(data.get("ca_file") or ""),
            pin_sha256=str(data.get("pin_sha256") or ""),
        )
    except (KeyError, TypeError):
        raise TrapsError(f"{path}: not a trapsd identity file") from None
    if not identity.servers:
        raise TrapsError(f"{path}: the server list is empty")
    return identity


def save_identity(state_dir: Path, identity: Identity) -> None:
    ensure_private_dir(state_dir)
    write_json(identity_path(state_dir), dataclasses.asdict(identity))


def advertised_servers(identity_pinned: bool, urls: Sequence[str]) -> list[str]:
    """The server URLs an agent may adopt: with a pinned CA or certificate, https only (an
    advertised ``http://`` URL would silently drop the pinning)."""
    if not identity_pinned:
        return list(urls)
    return [url for url in urls if url.strip().lower().startswith("https://")]


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
    pin_sha256: str | None = None,
) -> Identity:
    """Trade ``token`` for an identity and store it (state dir 0700, file 0600), pinning the
    CA (``ca_file``) and/or the server certificate (``pin_sha256``) for every later request."""
    path = identity_path(state_dir)
    if path.exists() and not force:
        raise TrapsError(f"already enrolled ({path} exists); use --force to enroll again")
    pin = normalise_pin(pin_sha256) if pin_sha256 else ""
    ca_pem = _read_ca(ca_file) if ca_file else b""
    ensure_private_dir(state_dir)
    request: EnrollRequest = {
        "token": token,
        "hostname": hostinfo.hostname(),
        "os": hostinfo.os_name(),
        "os_version": hostinfo.os_version(),
        "agent_version": __version__,
    }
    reply = agent_client.enroll(servers, request, timeout, ca_file, pin or None)
    pinned_ca = ""
    if ca_pem:
        write_private(state_dir / SERVER_CA_FILE, ca_pem)
        pinned_ca = str(state_dir / SERVER_CA_FILE)
    identity = Identity(
        agent_id=reply["agent_id"],
        agent_secret=reply["agent_secret"],
        servers=merge_servers(
            servers, advertised_servers(bool(pin or ca_pem), reply.get("servers") or [])
        ),
        enrolled_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        ca_file=pinned_ca,
        pin_sha256=pin,
    )
    save_identity(state_dir, identity)
    return identity


def _read_ca(ca_file: str) -> bytes:
    """The PEM bundle at ``ca_file``; one line when it is missing or holds no certificate."""
    try:
        data = Path(ca_file).read_bytes()
    except OSError as exc:
        raise UsageError(f"--ca-file {ca_file}: {exc.strerror or exc}") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise UsageError(f"--ca-file {ca_file}: no PEM certificate in it")
    return data

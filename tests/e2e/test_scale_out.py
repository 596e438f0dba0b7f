"""Scale-out: two `esmd serve` processes on one PostgreSQL database, one SIGKILLed mid-load.

Simulated agents (the real agent client, failover along the server list it was given)
upload event batches as fast as they can, re-sending a batch until it is acknowledged, as
the agent's outbox does. After the kill they must all be on the survivor, and every
acknowledged event must be in the database exactly once.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "scale-out password, long enough"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))

from localrun import Programs, describe, free_port, healthy  # noqa: E402
from payloads import event  # noqa: E402

from trapsapi.admin_client import AdminClient  # noqa: E402
from trapsapi.agent_client import AgentClient, enroll  # noqa: E402
from trapsapi.errors import TrapsError  # noqa: E402

AGENTS = 6
BATCH = 20


class Uploader(threading.Thread):
    """One simulated agent: batches until told to stop, each re-sent until acknowledged."""

    def __init__(self, client: AgentClient, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop = stop
        self.acked: list[str] = []
        self.sent: list[str] = []
        self.failures = 0
        self.servers_used: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            batch = [event(n) for n in range(BATCH)]
            self.sent += [e["id"] for e in batch]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    ack = self.client.upload_events(batch)  # type: ignore[arg-type]
                except TrapsError:
                    self.failures += 1
                    time.sleep(0.1)
                    continue
                self.acked += [str(i) for i in ack["acked"]]
                self.servers_used.append(self.client.server)
                break


@pytest.fixture
def programs(tmp_path: Path) -> Iterator[Programs]:
    env = dict(os.environ, ESMD_SERVER_HEARTBEAT_S="0.5")
    with Programs(tmp_path, env) as running:
        yield running


def test_agents_move_to_the_survivor_and_nothing_acknowledged_is_lost(
    programs: Programs, postgres_url: str, tmp_path: Path
) -> None:
    db = ["--data-dir", str(tmp_path / "esm"), "--database-url", postgres_url]
    init = programs.run(
        "esmd", "init", *db, "--admin-user", "admin", "--admin-password-stdin", stdin=PASSWORD
    )
    assert init.returncode == 0, describe(init)
    urls = []
    servers = []
    for _ in range(2):
        port = free_port()
        servers.append(programs.start("esmd", "serve", *db, "--port", str(port)))
        urls.append(f"http://127.0.0.1:{port}")
    first, second = urls
    for url in urls:
        programs.wait_for("esmd", lambda url=url: healthy(url), timeout=30)
    admin = AdminClient(second)
    admin.login("admin", PASSWORD)
    token = admin.create_token(label="scale-out", max_uses=AGENTS)["token"]

    # Enrolled through the first server, the agents learn the second from the registry.
    def both_registered() -> bool:
        rows = admin.list_servers()["data"]
        return {r["address"] for r in rows if r["alive"]} == set(urls)

    programs.wait_for("both servers registered", both_registered)
    time.sleep(1.0)  # the first server's heartbeat has read the live list
    clients = []
    for n in range(AGENTS):
        reply = enroll(
            [first],
            {
                "token": token,
                "hostname": f"scale-{n}",
                "os": "linux",
                "os_version": "x",
                "agent_version": "0",
            },
        )
        assert reply["servers"] == [first, second]
        clients.append(AgentClient(reply["servers"], reply["agent_id"], reply["agent_secret"]))

    stop = threading.Event()
    uploaders = [Uploader(client, stop) for client in clients]
    for uploader in uploaders:
        uploader.start()
    time.sleep(2.0)
    before_kill = sum(len(u.acked) for u in uploaders)
    servers[0].kill()  # SIGKILL, mid-load
    servers[0].wait()
    programs.processes.remove(servers[0])
    time.sleep(3.0)
    stop.set()
    for uploader in uploaders:
        uploader.join(90)
        assert not uploader.is_alive()

    acked = [i for u in uploaders for i in u.acked]
    sent = [i for u in uploaders for i in u.sent]
    assert before_kill > 0 and len(acked) > before_kill  # load before and after the kill
    assert sorted(acked) == sorted(sent)  # every batch was acknowledged in the end
    assert all(u.servers_used[-1] == second for u in uploaders)
    assert all(client.server == second for client in clients)
    engine = create_engine(postgres_url)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT CAST(id AS TEXT) FROM events")).scalars().all()
    engine.dispose()
    stored = sorted(str(uuid.UUID(r)) for r in rows)
    assert stored == sorted(acked)  # each acknowledged event exactly once, nothing else

    # The registry shows the killed server as gone once its heartbeat is three periods old.
    def first_gone() -> Any:
        rows = {r["address"]: r["alive"] for r in admin.list_servers()["data"]}
        return rows.get(first) is False and rows.get(second) is True

    programs.wait_for("the killed server listed as gone", first_gone, timeout=10)
    admin.close()
    for client in clients:
        client.close()

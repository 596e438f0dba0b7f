"""A live esmd for the operations tests: settings of one's own (export sinks, TLS), served by
uvicorn on a loopback port in a thread, with the usual :class:`esmd_harness.Esm` around it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from esmd_harness import ADMIN_PASSWORD, ADMIN_USER, Esm
from sqlalchemy import create_engine

from esmd.app import create_app
from trapsapi.admin_client import AdminClient


class OpsServer:
    def __init__(
        self,
        settings: Any,
        cert: Path | None = None,
        key: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            loop="asyncio",
            ssl_certfile=str(cert) if cert else None,
            ssl_keyfile=str(key) if key else None,
        )
        self.settings = settings
        self.ca_file = str(ca_file) if ca_file else None
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.scheme = "https" if cert else "http"

    def __enter__(self) -> Esm:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("esmd did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"{self.scheme}://127.0.0.1:{port}"
        admin = AdminClient(self.url, ca_file=self.ca_file)
        admin.login(ADMIN_USER, ADMIN_PASSWORD)
        self.esm = Esm(self.url, self.settings, admin, create_engine(self.settings.url))
        return self.esm

    def __exit__(self, *exc: object) -> None:
        self.esm.close()
        self.esm.admin.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

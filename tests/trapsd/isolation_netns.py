"""Run inside a fresh network namespace (``unshare -n``) by test_actions_root.py: isolates with
the agent's real code and reports what the kernel then routes, as one JSON line.

The namespace has a veth pair (10.99.0.1/24, default route via 10.99.0.254) and an HTTP
"ESM" on 127.0.0.1; nothing here can touch the host's network.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from trapsd.actions import isolation
from trapsd.actions.executors import confirm, is_isolated


def sh(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, capture_output=True, text=True, check=False)


def routable(address: str) -> bool:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.connect((address, 53))  # a route lookup, no packet sent
        return True
    except PermissionError:
        return False
    finally:
        sock.close()


class Host:
    def __init__(self, url: str, state_dir: Path) -> None:
        self.url = url
        self.state_dir = state_dir
        self.settings = SimpleNamespace(request_timeout_s=1.0)

    def checkin_now(self, timeout: float) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(self.url, timeout=min(timeout, 1.0)) as reply:
                return {"ok": reply.status == 200}
        except OSError as exc:
            return {"ok": False, "error": str(exc)}


def main() -> None:
    state_dir = Path(sys.argv[1])
    for command in (
        "ip link set lo up",
        "ip link add v0 type veth peer name v1",
        "ip addr add 10.99.0.1/24 dev v0",
        "ip link set v0 up",
        "ip link set v1 up",
        "ip route add default via 10.99.0.254",
    ):
        assert sh(command).returncode == 0, command
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    esm = f"http://127.0.0.1:{server.server_address[1]}/"
    report: dict[str, Any] = {"before": routable("192.0.2.7")}

    # Isolated, keeping 10.99.0.50 (an ESM address) and loopback (the local ESM) reachable.
    isolation.isolate([ipaddress.ip_address("10.99.0.50")])
    report["outside"] = routable("192.0.2.7")
    report["esm_route"] = routable("10.99.0.50")
    report["kept"] = confirm(Host(esm, state_dir), 5)
    report["esm_answers"] = Host(esm, state_dir).checkin_now(2)["ok"]
    report["rules"] = sh("ip rule show").stdout.count("73")

    # An ESM that does not answer: rolled back after the grace period.
    (state_dir / "isolation.json").write_text('{"active": true}')
    report["rolled_back"] = not confirm(Host("http://10.99.0.50:9/", state_dir), 2)
    report["after_rollback"] = routable("192.0.2.7")
    report["rules_after"] = sh("ip rule show").stdout.count("73")
    report["state_after"] = is_isolated(state_dir)
    server.shutdown()
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""TLS: ``esmd serve --tls-cert/--tls-key`` (clear errors, a real HTTPS server), and agents that
pin the CA or the server certificate at enrollment and refuse any other, on both databases."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from esmd_harness import ADMIN_PASSWORD, ADMIN_USER
from ops_harness import OpsServer
from tls_ca import TestCA

from esmd.cli import main as esmd_main
from esmd.config import Settings
from esmd.setup import initialise
from trapsd.checkin import Comms
from trapsd.cli import main as trapsd_main
from trapsd.config import AgentSettings
from trapsd.identity import SERVER_CA_FILE, advertised_servers, load_identity
from trapsd.outbox import Outbox


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


def _serve_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert esmd_main(["serve", "--data-dir", "/nonexistent", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err.strip()


def test_serve_tls_file_errors_are_one_line(
    ca: TestCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ca.server()
    missing = tmp_path / "missing.pem"
    assert _serve_error(capsys, "--tls-cert", str(missing), "--tls-key", str(server.key)) == (
        f"esmd: error: --tls-cert {missing}: no such file"
    )
    assert "not a file" in _serve_error(
        capsys, "--tls-cert", str(server.cert), "--tls-key", str(tmp_path)
    )
    assert _serve_error(capsys, "--tls-cert", str(server.cert)).endswith(
        "--tls-cert and --tls-key go together"
    )
    stray = ca.stray_key()
    assert _serve_error(capsys, "--tls-cert", str(server.cert), "--tls-key", str(stray)) == (
        f"esmd: error: --tls-key {stray} does not belong to --tls-cert {server.cert}"
    )
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    assert "not a PEM certificate and private key" in _serve_error(
        capsys, "--tls-cert", str(junk), "--tls-key", str(server.key)
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_esmd_serve_speaks_https(ca: TestCA, tmp_path: Path) -> None:
    """The real command in its own process, verified with the CA that signed its certificate."""
    server = ca.server()
    data = tmp_path / "esm"
    initialise(Settings(data_dir=data), ADMIN_USER, ADMIN_PASSWORD)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESMD_")}
    tls = ["--tls-cert", str(server.cert), "--tls-key", str(server.key)]
    process = subprocess.Popen(
        [sys.executable, "-m", "esmd", "serve", "--data-dir", str(data), "--port", str(port), *tls],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        context = ssl.create_default_context(cafile=str(ca.pem))
        deadline = time.monotonic() + 30
        while True:
            try:
                url = f"https://127.0.0.1:{port}/healthz"
                with urllib.request.urlopen(url, context=context, timeout=5) as reply:
                    assert json.loads(reply.read()) == {"status": "ok"}
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.1)
        with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(
                url, context=ssl.create_default_context(), timeout=5
            )  # the system CAs do not know the test CA
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert f"listening on https://127.0.0.1:{port}" in err


def _enroll(state: Path, url: str, token: str, *extra: str) -> int:
    return trapsd_main(
        ["enroll", "--state-dir", str(state), "--url", url, f"--token={token}", *extra]
    )


def _checkin(state: Path) -> dict[str, Any]:
    settings = AgentSettings(state_dir=state, request_timeout_s=5, backoff_min_s=0.1)
    identity = load_identity(state)
    outbox = Outbox(state / "outbox.db", 1024 * 1024)
    request: Any = {
        "hostname": "tls-host",
        "os": "linux",
        "os_version": "6.1",
        "agent_version": "0.1.0",
        "ips": ["10.0.0.9"],
        "modules": [],
        "footprint": None,
        "policy_version": None,
        "outbox_depth": 0,
        "events_dropped": 0,
    }
    comms = Comms(settings, identity, outbox, lambda: request, lambda reply: None)
    comms.start()
    try:
        return comms.checkin_now(20)
    finally:
        comms.stop()
        comms.client.close()


def test_agents_pin_the_ca_or_the_certificate(
    esm_settings: Any, ca: TestCA, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ca.server()
    other = TestCA(tmp_path / "other", "Other CA")
    with OpsServer(esm_settings, server.cert, server.key, ca.pem) as esm:
        url = esm.url

        # The right CA: enrolled, the CA copied into the identity, check-ins over TLS succeed.
        by_ca = tmp_path / "by-ca"
        assert _enroll(by_ca, url, esm.token(), "--ca-file", str(ca.pem)) == 0
        identity = load_identity(by_ca)
        assert identity.ca_file == str(by_ca / SERVER_CA_FILE)
        assert Path(identity.ca_file).read_bytes() == ca.pem.read_bytes()
        result = _checkin(by_ca)
        assert result["ok"] is True, result

        # The pinned certificate fingerprint (openssl's colon form), without any CA.
        by_pin = tmp_path / "by-pin"
        colons = ":".join(server.sha256[i : i + 2] for i in range(0, 64, 2)).upper()
        assert _enroll(by_pin, url, esm.token(), "--pin-sha256", colons) == 0
        assert load_identity(by_pin).pin_sha256 == server.sha256
        assert _checkin(by_pin)["ok"] is True
        capsys.readouterr()

        # A wrong CA or a wrong pin: refused with a clear line, nothing stored.
        wrong = tmp_path / "wrong"
        assert _enroll(wrong, url, esm.token(), "--ca-file", str(other.pem)) == 3
        err = capsys.readouterr().err
        assert "TLS refused: the server certificate does not verify" in err
        assert err.count("\n") == 1 and not (wrong / "identity.json").exists()
        assert _enroll(wrong, url, esm.token(), "--pin-sha256", "ab" * 32) == 3
        err = capsys.readouterr().err
        assert "is not the one pinned at enrollment" in err and server.sha256 in err
        assert _enroll(wrong, url, esm.token(), "--pin-sha256", "xyz") == 2
        assert "invalid SHA-256 fingerprint" in capsys.readouterr().err
        assert _enroll(wrong, url.replace("https", "http"), "t", "--pin-sha256", "ab" * 32) == 2
        assert "need https://" in capsys.readouterr().err

        # An enrolled agent whose pinned CA no longer matches the server refuses to talk.
        Path(identity.ca_file).write_bytes(other.pem.read_bytes())
        refused = _checkin(by_ca)
        assert refused["ok"] is False and "TLS refused" in refused["error"], refused
        identity_pin = json.loads((by_pin / "identity.json").read_text())
        identity_pin["pin_sha256"] = "cd" * 32
        (by_pin / "identity.json").write_text(json.dumps(identity_pin))
        refused = _checkin(by_pin)
        assert refused["ok"] is False and "not the one pinned" in refused["error"], refused


def test_a_pinned_agent_adopts_no_plain_http_server() -> None:
    urls = ["https://esm1:2125", "http://esm2:2125", "HTTPS://esm3:2125"]
    assert advertised_servers(True, urls) == ["https://esm1:2125", "HTTPS://esm3:2125"]
    assert advertised_servers(False, urls) == urls

"""`make demo`: an embedded ESM on SQLite, a real agent, an attack blocked, the event shown.

Everything lives under ./.traps/demo/ (wiped at the start) and every process started here is
stopped on exit, Ctrl-C included. Without a TTY nothing ever waits for input.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DEMO = ROOT / ".traps" / "demo"
STEPS = 9

console = Console(stderr=True, highlight=False, soft_wrap=True)
started: list[subprocess.Popen[bytes]] = []


class DemoFailed(Exception):
    pass


def step(number: int, text: str) -> None:
    console.print(f"[bold cyan][{number}/{STEPS}][/] {text}")


def detail(text: str) -> None:
    console.print(f"      {text}", style="dim")


def env() -> dict[str, str]:
    """The demo's own trapsctl config dir, so the user's real contexts are never touched."""
    values = dict(os.environ)
    values["XDG_CONFIG_HOME"] = str(DEMO / "config")
    values.pop("TRAPSCTL_SERVER", None)
    values.pop("TRAPSCTL_TOKEN", None)
    values.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    return values


def run(args: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:]],
        input=stdin,
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    if check and result.returncode != 0:
        message = result.stderr.strip().splitlines()[-1:] or [f"exit {result.returncode}"]
        raise DemoFailed(f"{' '.join(args[:3])}: {message[0]}")
    return result.stdout


def start(args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    process = subprocess.Popen(
        [str(BIN / args[0]), *args[1:]],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env(),
        start_new_session=True,
    )
    started.append(process)
    return process


def stop_all() -> None:
    for process in reversed(started):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        for process in started:
            if process.poll() is not None:
                raise DemoFailed(f"{what}: {process.args[0]} exited ({process.returncode})")
        time.sleep(0.2)
    raise DemoFailed(f"timed out waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def make_test_binary(path: Path) -> str:
    """A harmless 'malware': /bin/sleep plus one junk byte, so its SHA-256 is new."""
    source = Path(shutil.which("sleep") or "/bin/sleep")
    path.write_bytes(source.read_bytes() + b"\x00TRAPS-DEMO")
    path.chmod(0o755)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attack(binary: Path) -> str:
    """Run the test binary; as root the exec itself must fail, else the agent kills it."""
    try:
        process = subprocess.Popen([str(binary), "30"])
    except PermissionError as exc:
        return f"exec refused by the kernel: {exc.strerror} (errno {exc.errno})"
    try:
        code = process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise DemoFailed("the test binary ran for 15 s: the agent did not stop it") from None
    if code == -signal.SIGKILL:
        return "started, then killed by the agent (detection mode: not root)"
    raise DemoFailed(f"the test binary exited with {code}: it was not stopped")


def demo() -> None:
    is_root = os.geteuid() == 0
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    esm_dir, agent_dir = DEMO / "esm", DEMO / "agent"
    password = secrets.token_urlsafe(18)
    (DEMO / "admin-password").write_text(password + "\n")
    (DEMO / "admin-password").chmod(0o600)

    step(1, "Initialising an embedded ESM (SQLite) under .traps/demo/esm")
    run(
        [
            "esmd",
            "init",
            "--data-dir",
            str(esm_dir),
            "--admin-user",
            "admin",
            "--admin-password-stdin",
        ],
        stdin=password + "\n",
    )
    detail("superuser 'admin', password in .traps/demo/admin-password")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    step(2, f"Starting esmd on {url}")
    start(["esmd", "serve", "--data-dir", str(esm_dir), "--port", str(port)], DEMO / "esmd.log")
    wait_for("esmd to answer /healthz", lambda: healthy(url))

    step(3, "Logging in with trapsctl and creating an enrollment token")
    run(
        [
            "trapsctl",
            "login",
            "--server",
            url,
            "--username",
            "admin",
            "--password-stdin",
            "--insecure-storage",
        ],
        stdin=password + "\n",
    )
    token = json.loads(
        run(
            [
                "trapsctl",
                "tokens",
                "create",
                "--label",
                "demo",
                "--max-uses",
                "1",
                "--expires-in",
                "1h",
                "-o",
                "json",
            ]
        )
    )["token"]
    detail("token: single use, expires in 1 h")

    step(4, "Enrolling a real trapsd agent on this host and starting it")
    run(
        ["trapsd", "enroll", "--server", url, "--token-file", "-", "--state-dir", str(agent_dir)],
        stdin=token + "\n",
    )
    start(["trapsd", "run", "--state-dir", str(agent_dir)], DEMO / "trapsd.log")
    agent = wait_for("the agent to check in", lambda: connected_agent())
    detail(f"agent {agent['agent_id']} ({agent['hostname']}) is {agent['health']}")
    mechanism = module_mechanism(agent)
    if is_root:
        detail(f"running as root: malware module blocks before execution ({mechanism})")
    else:
        detail(
            f"not root: cannot block before execution; the agent detects and kills ({mechanism})"
        )

    step(5, "Making a harmless test binary (a copy of sleep with one changed byte)")
    binary = DEMO / "evil-sleep"
    sha256 = make_test_binary(binary)
    detail(f"{binary.relative_to(ROOT)}  sha256 {sha256}")

    step(6, "Marking its SHA-256 as malware (trapsctl hashes block)")
    run(["trapsctl", "hashes", "block", sha256, "--comment", "make demo test binary"])

    step(7, "Telling the agent to check in now, so it pulls the new policy")
    run(["trapsd", "checkin", "--state-dir", str(agent_dir)])

    step(8, f"Running {binary.name}")
    outcome = attack(binary)
    detail(outcome)

    step(9, "The security event, as the ESM shows it (trapsctl events list)")
    wait_for("the event to reach the ESM", lambda: event_for(sha256), timeout=15)
    table = run(["trapsctl", "events", "list", "--since", "1h"])
    sys.stdout.write(table)
    console.print("[bold green]Demo complete:[/] the attack was stopped and reported.")


def connected_agent() -> dict[str, Any] | None:
    agents = json.loads(run(["trapsctl", "agents", "list", "-o", "json"]))
    return next((a for a in agents if a["health"] == "connected"), None)


def module_mechanism(agent: dict[str, Any]) -> str:
    for module in agent.get("modules", []):
        if module["name"] == "malware":
            return f"{module['mechanism']}, {'healthy' if module['healthy'] else 'degraded'}"
    return "unknown"


def event_for(sha256: str) -> bool:
    events = json.loads(run(["trapsctl", "events", "list", "-o", "json", "--since", "1h"]))
    return any(e.get("sha256") == sha256 for e in events)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        demo()
        return 0
    except DemoFailed as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        console.print(f"logs: {DEMO / 'esmd.log'}, {DEMO / 'trapsd.log'}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())

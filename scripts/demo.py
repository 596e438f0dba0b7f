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
import subprocess
import sys
from pathlib import Path
from typing import Any

from localrun import Programs, describe, free_port, healthy
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / ".traps" / "demo"
STEPS = 9

console = Console(stderr=True, highlight=False, soft_wrap=True)


class DemoFailed(Exception):
    pass


def step(number: int, text: str) -> None:
    console.print(f"[bold cyan][{number}/{STEPS}][/] {text}")


def detail(text: str) -> None:
    console.print(f"      {text}", style="dim")


def demo_env() -> dict[str, str]:
    """The demo's own trapsctl config dir, so the user's real contexts are never touched."""
    values = dict(os.environ)
    values["XDG_CONFIG_HOME"] = str(DEMO / "config")
    values.pop("TRAPSCTL_SERVER", None)
    values.pop("TRAPSCTL_TOKEN", None)
    values.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    return values


def run(programs: Programs, *args: str, stdin: str | None = None) -> str:
    result = programs.run(*args, stdin=stdin)
    if result.returncode != 0:
        raise DemoFailed(f"{' '.join(args[:3])}: {describe(result)}")
    return result.stdout


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


def demo(programs: Programs) -> None:
    is_root = os.geteuid() == 0
    esm_dir, agent_dir = DEMO / "esm", DEMO / "agent"
    password = secrets.token_urlsafe(18)
    (DEMO / "admin-password").write_text(password + "\n")
    (DEMO / "admin-password").chmod(0o600)

    def ctl(*args: str) -> Any:
        return json.loads(run(programs, "trapsctl", *args, "-o", "json"))

    step(1, "Initialising an embedded ESM (SQLite) under .traps/demo/esm")
    run(
        programs,
        "esmd",
        "init",
        "--data-dir",
        str(esm_dir),
        "--admin-user",
        "admin",
        "--admin-password-stdin",
        stdin=password + "\n",
    )
    detail("superuser 'admin', password in .traps/demo/admin-password")

    url = f"http://127.0.0.1:{free_port()}"
    step(2, f"Starting esmd on {url}")
    programs.start("esmd", "serve", "--data-dir", str(esm_dir), "--port", url.rsplit(":", 1)[1])
    programs.wait_for("esmd to answer /healthz", lambda: healthy(url))

    step(3, "Logging in with trapsctl and creating an enrollment token")
    run(
        programs,
        "trapsctl",
        "login",
        "--server",
        url,
        "--username",
        "admin",
        "--password-stdin",
        "--insecure-storage",
        stdin=password + "\n",
    )
    token = ctl("tokens", "create", "--label", "demo", "--max-uses", "1", "--expires-in", "1h")
    detail("token: single use, expires in 1 h")

    step(4, "Enrolling a real trapsd agent on this host and starting it")
    run(
        programs,
        "trapsd",
        "enroll",
        "--server",
        url,
        "--token-file",
        "-",
        "--state-dir",
        str(agent_dir),
        stdin=token["token"] + "\n",
    )
    programs.start("trapsd", "run", "--state-dir", str(agent_dir))
    agent = programs.wait_for(
        "the agent to check in",
        lambda: next((a for a in ctl("agents", "list") if a["health"] == "connected"), None),
    )
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
    run(programs, "trapsctl", "hashes", "block", sha256, "--comment", "make demo test binary")

    step(7, "Telling the agent to check in now, so it pulls the new policy")
    run(programs, "trapsd", "checkin", "--state-dir", str(agent_dir))

    step(8, f"Running {binary.name}")
    detail(attack(binary))

    step(9, "The security event, as the ESM shows it (trapsctl events list)")
    programs.wait_for(
        "the event to reach the ESM",
        lambda: any(e["sha256"] == sha256 for e in ctl("events", "list", "--since", "1h")),
        timeout=15,
    )
    sys.stdout.write(run(programs, "trapsctl", "events", "list", "--since", "1h"))
    console.print("[bold green]Demo complete:[/] the attack was stopped and reported.")


def module_mechanism(agent: dict[str, Any]) -> str:
    for module in agent.get("modules", []):
        if module["name"] == "malware":
            return f"{module['mechanism']}, {'healthy' if module['healthy'] else 'degraded'}"
    return "unknown"


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    try:
        with Programs(DEMO, demo_env()) as programs:
            demo(programs)
        return 0
    except (DemoFailed, TimeoutError) as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        console.print(f"logs: {DEMO / 'esmd.log'}, {DEMO / 'trapsd.log'}")
        return 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

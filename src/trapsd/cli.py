"""The ``trapsd`` command line: enroll, run, status, checkin, rotate-credential, logs, console.

One error funnel: every failure is one line on stderr and an exit code from
:class:`trapsapi.errors.ExitCode` (2 for usage); ``-v`` adds debug logs and tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import queue
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from trapsapi.errors import ExitCode, TrapsError, UsageError
from trapsd import __version__
from trapsd.config import AgentSettings, load

log = logging.getLogger("trapsd")
TOKEN_ENV = "TRAPSD_ENROLL_TOKEN"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (the CLI may run in-process)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Logging never blocks a daemon thread: when stderr is stuck, lines are dropped."""

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            pass


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trapsd", description="Traps endpoint agent.")
    parser.add_argument("--version", action="version", version=f"trapsd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs, tracebacks")
    parser.add_argument(
        "--config",
        type=Path,
        help="settings file (default: $TRAPSD_CONFIG or /etc/trapsd/trapsd.toml)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--state-dir", type=Path, help="default: /var/lib/trapsd")
        sub.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="as above"
        )
        return sub

    enroll = command("enroll", "Trade an enrollment token for an agent identity.")
    enroll.add_argument(
        "--server", "--url", dest="server", required=True, help="ESM URL(s), comma-separated"
    )
    enroll.add_argument(
        "--ca-file", help="PEM CA that signs the server certificate (pinned in the identity)"
    )
    enroll.add_argument(
        "--pin-sha256",
        metavar="FINGERPRINT",
        help="SHA-256 fingerprint of the server certificate (pinned in the identity)",
    )
    source = enroll.add_mutually_exclusive_group()
    source.add_argument("--token", help=f"enrollment token (prefer --token-file or ${TOKEN_ENV})")
    source.add_argument("--token-file", help="read the token from this file, '-' for stdin")
    enroll.add_argument("--force", action="store_true", help="replace an existing identity")
    enroll.add_argument("-o", "--output", choices=("table", "json"), default="table")
    command("run", "Run the agent in the foreground (SIGTERM/SIGINT stop it).")
    status = command("status", "Modules, server, last check-in, outbox (daemon up or down).")
    status.add_argument("-o", "--output", choices=("table", "json"), default="table")
    checkin = command("checkin", "Ask the running daemon to check in now.")
    checkin.add_argument("-o", "--output", choices=("table", "json"), default="table")
    for name, what in (
        ("stop", "Stop the daemon (the policy's stop password, if set, from stdin)."),
        ("uninstall", "Stop the daemon and remove its state (the same password)."),
    ):
        verb = command(name, what)
        verb.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        verb.add_argument("-o", "--output", choices=("table", "json"), default="table")
    rotate = command("rotate-credential", "Replace the agent secret (no re-enrollment).")
    rotate.add_argument("-o", "--output", choices=("table", "json"), default="table")
    changes = command("policy-log", "Show the policies this agent applied or refused.")
    changes.add_argument("-n", "--limit", type=int, default=20, help="newest N (default 20)")
    changes.add_argument("-o", "--output", choices=("table", "json"), default="table")
    quarantine = command("quarantine", "List or restore quarantined files (root only).")
    quarantine.add_argument("verb", choices=("list", "restore"), help="list, or restore ID")
    quarantine.add_argument("id", nargs="?", help="the quarantine ID to restore")
    quarantine.add_argument("-o", "--output", choices=("table", "json"), default="table")
    events = command("events", "Recent local security events (since the daemon started).")
    events.add_argument("--limit", type=int, default=50, help="at most this many (1-200)")
    processes = command("processes", "Protected processes (--all: the whole process tree).")
    processes.add_argument("--all", action="store_true", help="every tracked process")
    command("policy", "The applied policy: version, hash lists, module states.")
    hash_cmd = command("hash", "SHA-256 of FILE and its local verdict, with its source.")
    hash_cmd.add_argument("file", metavar="FILE", type=Path)
    forensics = command("forensics", "Forensics bundles of security events.")
    forensics.add_argument("action", choices=("list", "show"))
    forensics.add_argument("id", metavar="ID", nargs="?", help="bundle ID (show)")
    for name in ("events", "processes", "policy", "hash", "forensics"):
        commands.choices[name].add_argument(
            "-o", "--output", choices=("table", "json"), default="table"
        )
    logs = command("logs", "Collect the agent's log bundle into a local file (root only).")
    logs.add_argument("verb", choices=("collect",), help="collect")
    logs.add_argument(
        "-O", dest="file", type=Path, help="write here (default: trapsd-logs-HOST-TIME.json.gz)"
    )
    logs.add_argument("-o", "--output", choices=("table", "json"), default="table")
    command("console", "The local console: modules, events, processes, policy, check in now.")
    return parser


def _settings(args: argparse.Namespace) -> AgentSettings:
    overrides = {"state_dir": args.state_dir.absolute()} if args.state_dir else {}
    return load(args.config, overrides)


def _read_token(args: argparse.Namespace) -> str:
    if args.token:
        token = str(args.token)
    elif args.token_file:
        try:
            if args.token_file == "-":
                token = sys.stdin.readline()
            else:
                token = Path(args.token_file).read_text().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise UsageError(f"--token-file: cannot read a token ({exc})") from None
    else:
        token = os.environ.get(TOKEN_ENV, "")
    token = token.strip()
    if not token:
        raise UsageError(f"no enrollment token: give --token, --token-file or ${TOKEN_ENV}")
    return token


def _enroll(args: argparse.Namespace) -> int:
    from trapsd.identity import enroll, parse_servers

    settings = _settings(args)
    servers = parse_servers(args.server)
    if (args.ca_file or args.pin_sha256) and any(url.startswith("http:") for url in servers):
        raise UsageError("--ca-file and --pin-sha256 need https:// server URLs")
    identity = enroll(
        settings.state_dir,
        servers,
        _read_token(args),
        settings.request_timeout_s,
        args.ca_file or settings.ca_file,
        args.force,
        args.pin_sha256,
    )
    if args.output == "json":
        reply = {"agent_id": identity.agent_id, "servers": identity.servers}
        sys.stdout.write(json.dumps({**reply, "state_dir": str(settings.state_dir)}) + "\n")
    else:
        sys.stdout.write(
            f"enrolled as agent {identity.agent_id} ({', '.join(identity.servers)}); "
            f"identity in {settings.state_dir}\n"
        )
    return ExitCode.OK


def _run(args: argparse.Namespace) -> int:
    from trapsd.daemon import Agent
    from trapsd.memory import single_malloc_arena

    single_malloc_arena()  # before the first thread (the logging one) starts
    settings = _settings(args)
    _daemon_logging(args.verbose, settings.log_level)
    agent = Agent(settings)
    agent.run()
    return ExitCode.STOPPED_ON_REQUEST if agent.stop_authorised else ExitCode.OK


def _status(args: argparse.Namespace) -> int:
    from trapsd.status import gather, render

    render(gather(_settings(args).state_dir), args.output)
    return ExitCode.OK


def _ask_daemon(args: argparse.Namespace, command: str, what: str, **fields: Any) -> dict[str, Any]:
    """Run ``command`` (with ``fields``) in the daemon; print JSON if asked; raise on failure."""
    from trapsd.control import call

    settings = _settings(args)
    timeout = settings.request_timeout_s * 8 + 10
    reply: dict[str, Any] = call(settings.state_dir, {"cmd": command, **fields}, timeout)
    if args.output == "json":
        sys.stdout.write(json.dumps(reply, sort_keys=True) + "\n")
    if not reply.get("ok"):
        try:
            code = ExitCode(int(reply.get("exit_code") or ExitCode.ERROR))
        except ValueError:
            code = ExitCode.ERROR
        error = TrapsError(f"{what} failed: {reply.get('error')}")
        error.exit_code = code
        raise error
    return reply


def _checkin(args: argparse.Namespace) -> int:
    reply = _ask_daemon(args, "checkin", "check-in")
    if args.output != "json":
        version = reply.get("policy_version")
        sys.stdout.write(f"checked in to {reply.get('server')}: policy version {version}\n")
    return ExitCode.OK


def _stop(args: argparse.Namespace) -> int:
    """Tamper protection: the daemon checks the password of the applied policy."""
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else ""
    _ask_daemon(args, args.command, args.command, password=password)
    if args.output != "json":
        stopping = "uninstalling" if args.command == "uninstall" else "stopping"
        sys.stdout.write(f"trapsd is {stopping}\n")
    return ExitCode.OK


def _rotate(args: argparse.Namespace) -> int:
    reply = _ask_daemon(args, "rotate", "credential rotation")
    if args.output != "json":
        sys.stdout.write(f"new agent secret in use at {reply.get('server')}\n")
    return ExitCode.OK


def _quarantine(args: argparse.Namespace) -> int:
    """Through the daemon when it runs (it also unblocks the hash), else on the state dir."""
    from trapsd.actions.host import quarantine_verb
    from trapsd.actions.quarantine import describe
    from trapsd.control import DaemonNotRunning, call

    if args.verb == "restore" and not args.id:
        raise UsageError("quarantine restore: give the quarantine ID (see trapsd quarantine list)")
    request = {"cmd": f"quarantine-{args.verb}", "id": args.id}
    state_dir = _settings(args).state_dir
    try:
        reply: dict[str, Any] = call(state_dir, request, 30)
    except DaemonNotRunning:
        if not state_dir.is_dir():
            raise TrapsError(f"{state_dir}: no agent state here") from None
        reply = quarantine_verb(state_dir, request)
    if not reply.get("ok"):
        raise TrapsError(f"quarantine {args.verb}: {reply.get('error')}")
    if args.output == "json":
        sys.stdout.write(json.dumps(reply.get("entries", reply.get("restored")), sort_keys=True))
        sys.stdout.write("\n")
    elif args.verb == "list":
        sys.stdout.write(describe(reply["entries"]))
    else:
        sys.stdout.write(f"restored {reply['restored']['path']}\n")
    return ExitCode.OK


def _logs(args: argparse.Namespace) -> int:
    from trapsd.log_collection import collect

    return collect(_settings(args), args.file, args.output == "json")


def _console(args: argparse.Namespace) -> int:
    """The Textual console (the ``cli`` extra), if the policy lets this user open it."""
    import importlib.util

    from trapsd.console.access import check_access
    from trapsd.console.source import READ_TIMEOUT_S, control_source
    from trapsd.control import call

    if importlib.util.find_spec("textual") is None:
        raise UsageError("trapsd console needs Textual: pip install 'traps[cli]'")
    settings = _settings(args)
    state_dir = settings.state_dir

    def ask_status() -> dict[str, Any]:
        status = call(state_dir, {"cmd": "status"}, READ_TIMEOUT_S).get("status")
        return status if isinstance(status, dict) else {}

    check_access(state_dir, os.geteuid(), ask_status)
    from trapsd.console.app import make_console

    make_console(control_source(state_dir, settings.request_timeout_s * 8 + 10)).run()
    return ExitCode.OK


def _daemon_logging(verbose: bool, level: str) -> None:
    """Records go through a bounded queue to one thread that writes stderr."""
    records: queue.Queue[logging.LogRecord] = queue.Queue(10_000)
    stream = _StderrHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    listener = logging.handlers.QueueListener(records, stream)
    listener.start()
    root = logging.getLogger()
    root.handlers[:] = [_DroppingQueueHandler(records)]
    root.setLevel(logging.DEBUG if verbose else level.upper())
    import atexit

    atexit.register(listener.stop)


def _policy_log(args: argparse.Namespace) -> int:
    from trapsd.policylog import read

    entries = read(_settings(args).state_dir, max(args.limit, 0))
    if args.output == "json":
        sys.stdout.write(json.dumps(entries, sort_keys=True) + "\n")
        return ExitCode.OK
    for entry in entries:
        what = ", ".join(entry.get("changed") or []) or entry.get("error") or "-"
        sys.stdout.write(
            f"{entry.get('time')}  {entry.get('result'):<8}  "
            f"{entry.get('from_version')} -> {entry.get('to_version')}  {what}\n"
        )
    return ExitCode.OK


COMMANDS = {
    "enroll": _enroll,
    "run": _run,
    "status": _status,
    "checkin": _checkin,
    "rotate-credential": _rotate,
    "stop": _stop,
    "uninstall": _stop,
    "policy-log": _policy_log,
    "quarantine": _quarantine,
    "logs": _logs,
    "console": _console,
}


def _inspect(args: argparse.Namespace) -> int:
    from trapsd.inspection import run

    return run(args.command, args, _settings(args).state_dir)


COMMANDS.update(dict.fromkeys(("events", "processes", "policy", "hash", "forensics"), _inspect))


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in raw or "--verbose" in raw
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("trapsd: %(levelname)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    try:
        args = _parser().parse_args(argv)
        return int(COMMANDS[args.command](args))
    except TrapsError as exc:
        if verbose:
            traceback.print_exc()
        sys.stderr.write(f"trapsd: error: {exc.message}\n")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("trapsd: interrupted\n")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        sys.stderr.write(f"trapsd: error: {type(exc).__name__}: {exc} (-v for details)\n")
        return int(ExitCode.ERROR)

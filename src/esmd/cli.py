"""The ``esmd`` command: ``esmd init`` and ``esmd serve`` (argparse: no CLI framework on servers).

One error funnel: every failure is one line on stderr and an exit code of
:class:`trapsapi.errors.ExitCode`; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from esmd import __version__
from trapsapi.enums import Role
from trapsapi.errors import ExitCode, TrapsError, UsageError

log = logging.getLogger("esmd")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(ExitCode.USAGE)


def _database_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="data directory (default: /var/lib/esmd)")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
        "(default: SQLite in the data directory)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="esmd", description="Traps Endpoint Security Manager server.")
    parser.add_argument("--version", action="version", version=f"esmd {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, tracebacks on errors"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    init = commands.add_parser(
        "init", help="create or upgrade the database schema and the first superuser"
    )
    _database_options(init)
    init.add_argument("--admin-user", required=True, metavar="NAME", help="superuser to create")
    init.add_argument(
        "--admin-password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (else prompt on the TTY)",
    )

    serve = commands.add_parser("serve", help="run a communication server (foreground)")
    _database_options(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 2125)")
    serve.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS: PEM chain")
    serve.add_argument("--tls-key", type=Path, metavar="FILE", help="its PEM private key")

    users = commands.add_parser("add-user", help="add an admin user (a viewer by default)")
    _database_options(users)
    users.add_argument("username", metavar="NAME")
    users.add_argument("--role", choices=[r.value for r in Role], default=Role.VIEWER.value)
    users.add_argument("--password-stdin", action="store_true", help="read it from stdin")

    retention = commands.add_parser(
        "retention", help="delete old events and forensic bundles now (see --help)"
    )
    retention_commands = retention.add_subparsers(
        dest="retention_command", metavar="ACTION", parser_class=_Parser
    )
    retention_commands.required = True
    run = retention_commands.add_parser(
        "run", help="one retention pass with the configured or given limits, and a summary"
    )
    _database_options(run)
    run.add_argument("--events-days", type=int, metavar="N", help="delete events older than N days")
    run.add_argument("--events-max-rows", type=int, metavar="N", help="keep at most N events")
    run.add_argument(
        "--forensics-days", type=int, metavar="N", help="delete forensic bundles older than N days"
    )
    run.add_argument(
        "--forensics-max-bytes", type=int, metavar="N", help="keep at most N bytes of bundles"
    )
    return parser


def _password_reader(from_stdin: bool, what: str) -> Any:
    """A callable that obtains the password only when it is needed."""

    def read() -> str:
        if from_stdin:
            line = sys.stdin.readline()
            if not line:
                raise UsageError("no password on stdin")
            return line.rstrip("\r\n")
        if not sys.stdin.isatty():
            raise UsageError(f"no TTY to ask for the {what} password: use the --*-stdin option")
        first = getpass.getpass(f"Password for {what}: ")
        if getpass.getpass("Repeat it: ") != first:
            raise UsageError("the passwords differ")
        return first

    return read


def _settings(args: argparse.Namespace, **extra: Any) -> Any:
    from esmd.config import load_settings

    return load_settings(data_dir=args.data_dir, database_url=args.database_url, **extra)


def cmd_init(args: argparse.Namespace) -> int:
    from esmd.setup import initialise

    settings = _settings(args)
    password = _password_reader(args.admin_password_stdin, repr(args.admin_user))
    result = initialise(settings, args.admin_user, password)
    state = "created" if result.user_created else "already exists (unchanged)"
    log.info(
        "ready: %s at schema revision %s; superuser %r %s",
        result.database,
        result.revision,
        args.admin_user,
        state,
    )
    return ExitCode.OK


def cmd_add_user(args: argparse.Namespace) -> int:
    from esmd.setup import create_user

    settings = _settings(args)
    password = _password_reader(args.password_stdin, repr(args.username))
    if create_user(settings, args.username, password, Role(args.role)):
        log.info("user %r created with role %s", args.username, args.role)
        return ExitCode.OK
    raise TrapsError(f"user {args.username!r} already exists")


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from esmd.app import create_app
    from esmd.db.engine import make_engine
    from esmd.ops.tls import check_tls_files
    from esmd.services.collector import freeze_startup
    from esmd.setup import check_schema

    settings = _settings(args, host=args.host, port=args.port)
    tls = check_tls_files(args.tls_cert, args.tls_key) is not None
    engine = make_engine(settings.url, pool_size=1)
    try:
        check_schema(engine)
    finally:
        engine.dispose()
    told = (
        ", ".join(settings.public_urls)
        if settings.public_urls_configured
        else "the URL they connect to (set ESMD_PUBLIC_URLS to override)"
    )
    sock = _listen(settings.host, settings.port)
    scheme = "https" if tls else "http"
    log.info(
        "listening on %s://%s:%d; agents are told %s", scheme, settings.host, settings.port, told
    )
    config = uvicorn.Config(
        create_app(settings),
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=args.verbose,
        server_header=False,
        timeout_graceful_shutdown=10,
        backlog=settings.listen_backlog,
        ssl_certfile=str(args.tls_cert) if tls else None,
        ssl_keyfile=str(args.tls_key) if tls else None,
    )
    server = _server(config)
    freeze_startup()  # a broadcast's full collections scan the polls, not the modules
    server.run(sockets=[sock])
    if not server.started:
        raise TrapsError("the server did not start (see the log above)")
    return ExitCode.OK


def _server(config: Any) -> Any:
    """uvicorn's server, except that held long-polls end as shutdown begins: agents poll
    again at once (failing over) instead of holding the shutdown for its graceful timeout
    and then getting a 500."""
    import uvicorn

    class EsmServer(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            notifier = getattr(getattr(config.app, "state", None), "notifier", None)
            if notifier is not None:
                notifier.release_all()
            await super().shutdown(sockets)

    return EsmServer(config)


def _listen(host: str, port: int) -> socket.socket:
    """Bind here, so that a taken port is one clear error line (IPPROTO_TCP: see perf.md)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise TrapsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def cmd_retention(args: argparse.Namespace) -> int:
    from esmd.db.engine import Database
    from esmd.ops import retention
    from esmd.setup import check_schema

    settings = _settings(
        args,
        retention_events_days=args.events_days,
        retention_events_max_rows=args.events_max_rows,
        retention_forensics_days=args.forensics_days,
        retention_forensics_max_bytes=args.forensics_max_bytes,
    )
    db = Database.from_url(settings.url, pool_size=1, max_overflow=1)
    try:
        check_schema(db.engine)
        summary = retention.run(db, settings)
    finally:
        db.dispose()
    for line in summary.lines():
        sys.stdout.write(line + "\n")
    if not any(t.max_age_days or t.max_rows or t.max_bytes for t in retention.targets(settings)):
        log.info("no retention limit is configured (ESMD_RETENTION_EVENTS_DAYS/_MAX_ROWS, …)")
    return ExitCode.OK


COMMANDS = {
    "init": cmd_init,
    "serve": cmd_serve,
    "add-user": cmd_add_user,
    "retention": cmd_retention,
}


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format=LOG_FORMAT,
        stream=sys.stderr,
        force=True,
    )
    if not verbose:
        for noisy in ("alembic", "uvicorn.access", "multipart"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def _database_error(exc: Exception) -> str | None:
    """A one-line description of a database connection failure, or None."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    if isinstance(exc, OperationalError | DBAPIError):
        reason = str(exc.orig).strip().splitlines()
        return "database unavailable: " + (reason[0] if reason else type(exc.orig).__name__)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        sys.stderr.write("esmd: interrupted\n")
        return ExitCode.INTERRUPTED
    except TrapsError as exc:
        if args.verbose:
            log.exception("details")
        sys.stderr.write(f"esmd: error: {exc}\n")
        return exc.exit_code
    except Exception as exc:
        if args.verbose:
            log.exception("details")
        message = _database_error(exc)
        if message is not None:
            sys.stderr.write(f"esmd: error: {message}\n")
            return ExitCode.UNREACHABLE
        first = (str(exc).strip().splitlines() or [""])[0]
        sys.stderr.write(f"esmd: unexpected error: {type(exc).__name__}: {first}\n")
        return ExitCode.ERROR

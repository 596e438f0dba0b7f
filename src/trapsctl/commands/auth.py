"""``trapsctl login``, ``logout`` and ``whoami``: the console's credential for one ESM."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from trapsapi.errors import AuthError, TrapsError, UsageError
from trapsctl.config import (
    FILE_STORAGE,
    KEYRING_STORAGE,
    Context,
    env_settings,
    load_config,
    normalise_server,
    save_config,
)
from trapsctl.credentials import (
    CredentialStoreError,
    InsecureTokenFile,
    forget_token,
    keyring_problem,
    store_token,
)
from trapsctl.options import OutputOption
from trapsctl.output import Column, OutputFormat, emit_object, timestamp
from trapsctl.session import connect, global_options, output_format, resolve


def read_password(from_stdin: bool) -> str:
    """One line from stdin with ``--password-stdin``, else a no-echo prompt on the terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password: pipe it in with --password-stdin")
    password = getpass.getpass("Password: ")
    if not password:
        raise UsageError("empty password")
    return password


def _default_context_name(server: str) -> str:
    return urlsplit(server).netloc or server


LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


def _warn_if_cleartext(server: str) -> None:
    parts = urlsplit(server)
    if parts.scheme == "http" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        sys.stderr.write(
            f"warning: {server} is plain http: the password and the token cross the network "
            "unencrypted; use https\n"
        )


def login(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="URL",
            help="ESM URL, e.g. https://esm.example.org:2125. Default: the global --server, "
            "else the context's server.",
        ),
    ] = None,
    username: Annotated[
        str | None,
        typer.Option("--username", "-u", metavar="NAME", help="Default: the context's user."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
    insecure_storage: Annotated[
        bool,
        typer.Option(
            "--insecure-storage",
            help="Keep the token in a 0600 file under $XDG_CONFIG_HOME/trapsctl "
            "instead of the OS keyring (for hosts without one).",
        ),
    ] = False,
    context_name: Annotated[
        str | None,
        typer.Option(
            "--context",
            metavar="NAME",
            help="Name of the context to create or update. Default: the global --context, "
            "else the server's host:port.",
        ),
    ] = None,
    ca_file: Annotated[
        str | None,
        typer.Option("--ca-file", metavar="PATH", help="CA bundle to verify an https ESM with."),
    ] = None,
) -> None:
    """Log in to an ESM; the token goes to the OS keyring.

    The password is read from stdin (--password-stdin) or asked for on the terminal; it is
    never a command-line argument. When no keyring backend works, login fails unless
    --insecure-storage is given.
    """
    options = global_options(ctx)
    config = load_config()
    wanted = context_name or options.context
    existing = config.contexts.get(wanted) if wanted else config.context()  # may be new
    server = server or options.server or (existing.server if existing else None)
    if not server:
        raise UsageError("--server is required for the first login")
    server = normalise_server(server)
    if existing is not None and existing.server != server and not context_name:
        existing = config.context_for_server(server)
    username = username or (existing.username if existing else None)
    if not username:
        raise UsageError("--username is required for the first login")
    name = context_name or options.context or (existing.name if existing else None)
    context = Context(
        name=name or _default_context_name(server),
        server=server,
        username=username,
        token_storage=FILE_STORAGE if insecure_storage else KEYRING_STORAGE,
        ca_file=ca_file or (existing.ca_file if existing else None),
    )
    if not insecure_storage:
        problem = keyring_problem()
        if problem:
            raise CredentialStoreError(
                f"{problem}: cannot store the token safely. Use --insecure-storage to keep it "
                "in a 0600 file, or TRAPSCTL_SERVER and TRAPSCTL_TOKEN for scripts"
            )
    _warn_if_cleartext(server)
    password = read_password(password_stdin)

    from trapsapi.admin_client import AdminClient

    settings = env_settings()
    ca = str(settings.ca_file) if settings.ca_file else context.ca_file
    client = AdminClient(server, timeout=settings.timeout, ca_file=ca)
    try:
        reply = client.login(username, password)
        try:
            where = store_token(context, reply["token"], InsecureTokenFile())
        except TrapsError:
            client.logout()  # do not leave a live token nobody holds
            raise
    finally:
        client.close()
    if (
        existing
        and existing.name == context.name
        and existing.credential_key != context.credential_key
    ):
        forget_token(existing, InsecureTokenFile())  # the context now points elsewhere
    config.contexts[context.name] = context
    config.current_context = context.name
    save_config(config)
    if insecure_storage:
        sys.stderr.write(f"warning: the token is stored unencrypted in {where}\n")
    role = reply.get("role", "?")
    sys.stderr.write(
        f"Logged in to {server} as {username} ({role}); context {context.name!r}, "
        f"token in {where}, expires {timestamp(reply.get('expires_at'))}.\n"
    )


def logout(ctx: typer.Context) -> None:
    """Revoke the token on the ESM and delete it from this machine."""
    credential = resolve(ctx)
    failure: TrapsError | None = None
    try:
        with connect(ctx, credential) as client:
            client.logout()
    except AuthError:
        pass  # already expired or revoked: nothing left to revoke
    except TrapsError as exc:
        failure = exc
    removed = credential.context is not None and forget_token(
        credential.context, InsecureTokenFile()
    )
    if credential.source == "TRAPSCTL_TOKEN":
        sys.stderr.write("The TRAPSCTL_TOKEN token is revoked; unset the variable.\n")
    elif removed and credential.context is not None:
        sys.stderr.write(f"Logged out of {credential.server} ({credential.context.name!r}).\n")
    if failure is not None:
        sys.stderr.write("warning: the local token is deleted but the ESM could not revoke it\n")
        raise failure


WHOAMI_FIELDS = [
    Column("USERNAME", "username"),
    Column("ROLE", "role"),
    Column("SERVER", "server"),
    Column("CONTEXT", "context"),
    Column("CREDENTIAL", "credential"),
]


def whoami(ctx: typer.Context, output: OutputOption = None) -> None:
    """Show the user, role, ESM and credential in use."""
    credential = resolve(ctx)
    with connect(ctx, credential) as client:
        user = client.whoami()
    fmt = output_format(ctx, output)
    shown: dict[str, Any] = dict(user)
    if fmt is OutputFormat.TABLE:
        shown.update(
            server=credential.server,
            context=credential.context.name if credential.context else None,
            credential=credential.source,
        )
    emit_object(shown, WHOAMI_FIELDS, fmt)

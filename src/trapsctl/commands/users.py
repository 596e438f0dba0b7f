"""``trapsctl users``: the ESM's admin users (superusers only) and your own password."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer

from trapsapi.enums import Role
from trapsapi.errors import UsageError
from trapsctl.options import LimitOption, NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, emit_list, emit_object, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Admin users: list, create, set-role, delete; passwd changes your own password.")

USER_COLUMNS = [
    Column("USERNAME", "username"),
    Column("ROLE", "role"),
    Column("CREATED", "created_at", timestamp),
]
UsernameArgument = Annotated[str, typer.Argument(metavar="USERNAME", help="The user's name.")]
PasswordStdinOption = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password(s) from standard input, one a line."),
]


def _new_password(from_stdin: bool, prompt: str = "New password: ") -> str:
    """A new password: a line of stdin, or asked twice on the terminal (never in argv)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin: no password on standard input")
        return password
    if not sys.stdin.isatty():
        raise UsageError("no terminal to ask for the password: pipe it in with --password-stdin")
    password = getpass.getpass(prompt)
    if password != getpass.getpass("Again: "):
        raise UsageError("the two passwords differ")
    return password


@app.command("list")
def list_users(
    ctx: typer.Context,
    role: Annotated[
        Role | None, typer.Option("--role", case_sensitive=False, help="Only this role.")
    ] = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List users and their roles (never password hashes)."""
    with connect(ctx) as client:
        page = client.list_users(role=role.value if role else None, limit=limit)
    emit_list(page, USER_COLUMNS, output_format(ctx, output), "users")


@app.command("create")
def create(
    ctx: typer.Context,
    username: UsernameArgument,
    role: Annotated[
        Role, typer.Option("--role", case_sensitive=False, help="What the user may do.")
    ] = Role.VIEWER,
    password_stdin: PasswordStdinOption = False,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Create a user; the password is asked for (or read with --password-stdin)."""
    password = _new_password(password_stdin)
    with connect(ctx) as client:
        user = client.create_user(username, password, role.value)
    emit_object(user, USER_COLUMNS, output_format(ctx, output))


@app.command("set-role")
def set_role(
    ctx: typer.Context,
    username: UsernameArgument,
    role: Annotated[Role, typer.Argument(metavar="ROLE", case_sensitive=False, help="New role.")],
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Change a user's role (it applies from their next request on)."""
    with connect(ctx) as client:
        user = client.set_user_role(username, role.value)
    emit_object(user, USER_COLUMNS, output_format(ctx, output))


@app.command("delete")
def delete(
    ctx: typer.Context,
    username: UsernameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a user with their sessions and API tokens."""
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"deleting {username!r}: confirm with --yes")
        typer.confirm(f"Delete user {username!r}?", abort=True, err=True)
    with connect(ctx) as client:
        client.delete_user(username)
    sys.stderr.write(f"User {username} deleted.\n")


@app.command("passwd")
def passwd(ctx: typer.Context, password_stdin: PasswordStdinOption = False) -> None:
    """Change your own password (with --password-stdin: the current one, then the new one)."""
    if password_stdin:
        current = _new_password(True)
    elif sys.stdin.isatty():
        current = getpass.getpass("Current password: ")
    else:
        raise UsageError("no terminal to ask for the password: pipe it in with --password-stdin")
    new = _new_password(password_stdin)
    with connect(ctx) as client:
        client.change_password(current, new)
    sys.stderr.write("Password changed; your other sessions are signed out.\n")

"""``trapsctl contexts``: the ESMs this console has logged in to, and which one is current."""

from __future__ import annotations

import dataclasses
import sys
from typing import Annotated

import typer

from trapsapi.errors import NotFound
from trapsctl.config import load_config, save_config
from trapsctl.options import NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, OutputFormat, emit_list, emit_object
from trapsctl.session import output_format

app = noun_app("Named ESM contexts: list, current, use, delete.")

CONTEXT_COLUMNS = [
    Column("CURRENT", "current", lambda v: "*" if v else ""),
    Column("NAME", "name"),
    Column("SERVER", "server", wrap=True),
    Column("USERNAME", "username"),
    Column("TOKEN STORAGE", "token_storage"),
]


@app.command("list")
def list_contexts(
    ctx: typer.Context,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List contexts (server, user, where the token is kept; never the token)."""
    config = load_config()
    rows = [
        {**dataclasses.asdict(context), "current": name == config.current_context}
        for name, context in sorted(config.contexts.items())
    ]
    emit_list(
        {"data": rows, "count": len(rows)}, CONTEXT_COLUMNS, output_format(ctx, output), "contexts"
    )


@app.command("use")
def use(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A context from contexts list.")],
) -> None:
    """Make a context the current one."""
    config = load_config()
    config.context(name)  # an unknown name is a usage error
    config.current_context = name
    save_config(config)
    sys.stderr.write(f"Current context: {name}\n")


@app.command("current")
def current(ctx: typer.Context, output: OutputOption = None) -> None:
    """Print the current context's name (exit 5 when there is none)."""
    config = load_config()
    context = config.context()
    if context is None:
        raise NotFound("no current context: run trapsctl login or trapsctl contexts use NAME")
    fmt = output_format(ctx, output)
    if fmt is OutputFormat.TABLE:
        sys.stdout.write(f"{context.name}\n")
    else:
        shown = {**dataclasses.asdict(context), "current": True}
        emit_object(shown, CONTEXT_COLUMNS[1:], fmt, id_key="name")


@app.command("delete")
def delete(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A context from contexts list.")],
) -> None:
    """Forget a context and delete its token from this machine (the ESM is not told: use
    trapsctl logout first to revoke the token there)."""
    from trapsctl.credentials import InsecureTokenFile, forget_token

    config = load_config()
    context = config.context(name)  # an unknown name is a usage error
    assert context is not None
    forget_token(context, InsecureTokenFile())
    del config.contexts[name]
    if config.current_context == name:
        config.current_context = None
    save_config(config)
    sys.stderr.write(f"Context {name} deleted.\n")

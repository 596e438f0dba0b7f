"""The ``trapsctl`` command: root options, the command tree and the one error funnel.

Every failure leaves through :class:`ErrorFunnelGroup`: a :class:`TrapsError` becomes one line
``error: <message>`` on stderr and its exit code; usage errors exit 2 (Typer's own handling);
Ctrl-C exits 130; anything unexpected exits 1 with a hint to rerun with ``-v``, which shows
the traceback (plain, without local variables, so no secret is printed).
"""

from __future__ import annotations

import importlib
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from trapsapi.errors import ExitCode, TrapsError
from trapsctl import __version__, coercion
from trapsctl.options import CONTEXT_SETTINGS, MARKUP_MODE, NoHeadersOption, QuietOption
from trapsctl.output import OutputFormat, reset_render
from trapsctl.session import GlobalOptions, global_options

# The command tree: name -> "module:attribute", where the attribute is a Typer (a noun and its
# verbs) or a function (one command). A run imports only the module of the command it runs
# (``trapsctl agents list`` loads commands.agents and what it imports, not the other fifteen);
# ``--help`` and TAB on the first word load them all. Names starting with "__" are hidden.
# A new command is one line here.
COMMANDS: dict[str, str] = {
    "login": "trapsctl.commands.auth:login",
    "logout": "trapsctl.commands.auth:logout",
    "whoami": "trapsctl.commands.auth:whoami",
    "dashboard": "trapsctl.commands.dashboard:dashboard",
    "completion": "trapsctl.commands.completion:completion",
    "version": "trapsctl.commands.version:version",
    "contexts": "trapsctl.commands.contexts:app",
    "agents": "trapsctl.commands.agents:app",
    "events": "trapsctl.commands.events:app",
    "hashes": "trapsctl.commands.hashes:app",
    "tokens": "trapsctl.commands.tokens:app",
    "api-tokens": "trapsctl.commands.api_tokens:app",
    "servers": "trapsctl.commands.servers:app",
    "policies": "trapsctl.commands.policies:app",
    "actions": "trapsctl.commands.actions:app",
    "quarantine": "trapsctl.commands.actions:quarantine_app",
    "users": "trapsctl.commands.users:app",
    "audit": "trapsctl.commands.audit:app",
    "forensics": "trapsctl.commands.forensics:app",
    "__complete-agents": "trapsctl.commands.complete:complete_agents",
}

ALIASES = {"context": "contexts"}
"""Other names a command answers to (kubectl's singular ``context``); not listed in help."""


def load_command(name: str) -> Any:
    """The Click command (or group) of ``COMMANDS[name]``, built from its module on demand."""
    module_name, _, attribute = COMMANDS[name].partition(":")
    target = getattr(importlib.import_module(module_name), attribute)
    command: Any
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, rich_markup_mode=MARKUP_MODE)
        single.command(name, hidden=name.startswith("__"))(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


EPILOG = """\
Exit codes:

\b
    0  ok
    1  error (rejected by the ESM, conflict, server error)
    2  usage (bad option or value, unknown context)
    3  ESM unreachable (connection refused, DNS, TLS, timeout)
    4  authentication (not logged in, expired or revoked token, role not allowed)
    5  not found
  130  interrupted (Ctrl-C)

\b
Credentials: --server > TRAPSCTL_SERVER > context; token: TRAPSCTL_TOKEN > OS keyring
> --insecure-storage file. Files: $XDG_CONFIG_HOME/trapsctl/config.toml (no tokens).
Environment: TRAPSCTL_SERVER, TRAPSCTL_TOKEN, TRAPSCTL_CONTEXT, TRAPSCTL_OUTPUT,
TRAPSCTL_TIMEOUT (seconds, default 30), TRAPSCTL_CA_FILE (CA bundle for https).
"""


def _report(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


class ErrorFunnelGroup(TyperGroup):
    """The root group: loads commands from :data:`COMMANDS` when they are asked for, and
    turns every exception of a command into a message and an exit code."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd_name = ALIASES.get(cmd_name, cmd_name)
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMANDS:
            command = load_command(cmd_name)
            self.add_command(command, cmd_name)
        return command

    def main(self, *args: Any, **kwargs: Any) -> Any:
        coercion.install()  # parameters without pydantic: see trapsctl.coercion
        reset_render()  # -q / --no-headers are per run (tests run many in one process)
        return super().main(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException, BrokenPipeError):
            raise  # Typer's own: exit codes, usage errors (2), EPIPE
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except TrapsError as exc:
            self._show_traceback_if_verbose(ctx)
            _report(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if self._show_traceback_if_verbose(ctx):
                _report(f"unexpected {type(exc).__name__}: {exc}")
            else:
                _report(f"unexpected {type(exc).__name__}: {exc} (run with -v for details)")
            raise typer.Exit(ExitCode.ERROR) from None

    @staticmethod
    def _show_traceback_if_verbose(ctx: Any) -> bool:
        """With -v, print the traceback (plain: no local variables, so no secrets)."""
        options = ctx.find_object(GlobalOptions)
        if options and options.verbose:
            import traceback

            traceback.print_exc()
            return True
        return False


app = typer.Typer(
    name="trapsctl",
    cls=ErrorFunnelGroup,
    help="The Traps admin console: agents, security events, hash verdicts, enrollment tokens.",
    epilog=EPILOG,
    no_args_is_help=True,
    rich_markup_mode=MARKUP_MODE,
    context_settings=CONTEXT_SETTINGS,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"trapsctl {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            envvar="TRAPSCTL_SERVER",
            metavar="URL",
            help="ESM URL (default: the current context's).",
        ),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option(
            "--context",
            envvar="TRAPSCTL_CONTEXT",
            metavar="NAME",
            help="Use this saved context instead of the current one.",
        ),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--output",
            "-o",
            envvar="TRAPSCTL_OUTPUT",
            case_sensitive=False,
            help="table (for people), json or yaml (the stable contract for scripts), csv.",
        ),
    ] = OutputFormat.TABLE,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show tracebacks of errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    ctx.obj = GlobalOptions(server=server, context=context, output=output, verbose=verbose)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="trapsctl")


__all__ = ["COMMANDS", "app", "global_options", "main"]

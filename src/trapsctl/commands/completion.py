"""``trapsctl completion SHELL``: the shell completion script (same text as completions/)."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from trapsapi.errors import TrapsError

PROG_NAME = "trapsctl"
COMPLETE_VAR = "_TRAPSCTL_COMPLETE"


class Shell(StrEnum):
    BASH = "bash"
    ZSH = "zsh"
    FISH = "fish"


def completion(
    ctx: typer.Context,
    shell: Annotated[Shell, typer.Argument(case_sensitive=False, help="bash, zsh or fish.")],
) -> None:
    """Print the completion script for a shell.

    \b
    bash: trapsctl completion bash > ~/.local/share/bash-completion/completions/trapsctl
    zsh:  trapsctl completion zsh > "${fpath[1]}/_trapsctl"
    fish: trapsctl completion fish > ~/.config/fish/completions/trapsctl.fish
    """
    # The code path of `_TRAPSCTL_COMPLETE=source_<shell> trapsctl`, so the two agree; stripped
    # like scripts/gen_completions.py does (zsh wants "#compdef" on the first line).
    import contextlib
    import io

    from typer.completion import shell_complete

    script = io.StringIO()
    with contextlib.redirect_stdout(script):
        status = shell_complete(
            ctx.find_root().command, {}, PROG_NAME, COMPLETE_VAR, f"source_{shell}"
        )
    if status != 0:
        raise TrapsError(f"cannot make the {shell} completion script")
    sys.stdout.write(script.getvalue().strip() + "\n")

"""A progress bar on stderr for long operations, only when stderr is a terminal.

rich is imported only then; in pipes and scripts nothing is drawn (and nothing is imported).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _nothing(steps: int = 1) -> None:
    return None


@contextmanager
def progress(total: int, what: str, minimum: int = 20) -> Iterator[Callable[..., None]]:
    """Yields ``advance(steps=1)``; draws a bar for ``total`` >= ``minimum`` steps on a
    terminal."""
    if total < minimum or not sys.stderr.isatty() or os.environ.get("TERM") == "dumb":
        yield _nothing
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    console = Console(file=sys.stderr)
    columns = (what, BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda steps=1: bar.advance(task, steps)

"""The parts every command module shares: the Typer settings, ``-o/--output``, ``-q``,
``--no-headers`` and ``--limit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from trapsctl.output import RENDER, OutputFormat

# Plain Click-style help: no rich import for --help, and usage errors stay one clean block.
MARKUP_MODE: Any = None
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}


def noun_app(help_text: str) -> typer.Typer:
    """A Typer for one noun (``agents``, ``events`` …), set up like the root."""
    return typer.Typer(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode=MARKUP_MODE,
        context_settings=CONTEXT_SETTINGS,
        pretty_exceptions_enable=False,
        add_completion=False,
    )


OutputOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        show_default=False,
        help="table (for people), json or yaml (the stable contract for scripts), csv. "
        "Default: the global -o, else table.",
    ),
]

LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit", metavar="N", min=1, max=1000, help="Return at most this many rows (1-1000)."
    ),
]

AllOption = Annotated[
    bool,
    typer.Option(
        "--all", help="Every matching row, fetched page by page (--limit sets the page size)."
    ),
]
ALL_PAGE = 1000


def list_page(call: Callable[..., dict[str, Any]], every: bool, **filters: Any) -> dict[str, Any]:
    """One page of ``call`` (a list method of the AdminClient), or with ``every`` all of
    them, walked with the server's cursor, as one page."""
    if not every:
        return call(**filters)
    from trapsapi.admin_client import AdminClient

    filters["limit"] = filters.get("limit") or ALL_PAGE
    rows = list(AdminClient.rows(call, **filters))
    return {"data": rows, "count": len(rows)}


def _set_quiet(value: bool) -> None:
    if value:
        RENDER.quiet = True


def _set_no_headers(value: bool) -> None:
    if value:
        RENDER.headers = False


QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        callback=_set_quiet,
        expose_value=False,
        help="Print only the IDs, one a line (for pipes).",
    ),
]
NoHeadersOption = Annotated[
    bool,
    typer.Option(
        "--no-headers",
        callback=_set_no_headers,
        expose_value=False,
        help="Leave out the header line of tables and CSV.",
    ),
]

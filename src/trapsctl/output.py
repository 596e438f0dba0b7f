"""What the console writes on stdout: data only, as JSON/YAML (the stable contract), CSV or a table.

JSON is the server's objects unchanged: a list command prints the ``data`` array of the page,
a single-object command the object; YAML is the same data. CSV has one line per row with the
table's columns under their field names (raw values, for spreadsheets and ``cut``). Tables are
for people: key columns only, timestamps in UTC, long hashes shortened, no box drawing (so they
survive pipes, ``grep`` and ``cut``), and colour and bold only on a terminal, without
``NO_COLOR`` or ``TERM=dumb``. rich is imported only to draw a table, PyYAML only to write YAML.

``-q/--quiet`` prints only the IDs, one a line (``trapsctl agents list -q | xargs …``);
``--no-headers`` leaves out the header line of tables and CSV. Both are read from
:data:`RENDER`, which the option callbacks set (see :mod:`trapsctl.options`).

Every value shown in a table comes from agents or admins and may hold terminal escape
sequences; control characters are shown escaped (``\\x1b``) so they cannot drive the terminal.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

Row = dict[str, Any]


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"
    CSV = "csv"


@dataclass
class Render:
    """How to write, beyond the format: set per run by ``-q`` and ``--no-headers``."""

    quiet: bool = False
    headers: bool = True


RENDER = Render()


def reset_render() -> None:
    RENDER.quiet, RENDER.headers = False, True


# --- cell formatting ----------------------------------------------------------------------


def _escape_control(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """``value`` as one line of text with every control character escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_control(c) for c in text)


def timestamp(value: Any) -> str:
    """An ISO 8601 time from the server as ``YYYY-MM-DD HH:MM:SSZ`` (UTC)."""
    if not value:
        return "-"
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return printable(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def short_hash(value: Any) -> str:
    """The first 12 hex digits of a SHA-256 (enough to find it again with grep)."""
    return printable(value)[:12] if value else "-"


def byte_size(value: Any) -> str:
    """``900 B``, ``47.1 KiB``, ``3.0 MiB``; ``-`` for anything but an int."""
    if not isinstance(value, int):
        return "-"
    if value < 1024:
        return f"{value} B"
    if value < 1024 * 1024:
        return f"{value / 1024:.1f} KiB"
    return f"{value / 1024 / 1024:.1f} MiB"


def joined(value: Any) -> str:
    return ", ".join(printable(v) for v in value) if value else "-"


STYLES = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "informational": "dim",
    "connected": "green",
    "disconnected": "red",
    "degraded": "yellow",
    "stopped": "dim",
    "isolated": "magenta",
    "uninstalled": "dim",
    "protected": "green",
    "partially_protected": "yellow",
    "unprotected": "red",
    "prevented": "green",
    "killed": "green",
    "notified": "yellow",
    "malware": "red",
    "grayware": "yellow",
    "benign": "green",
    "active": "green",
    "revoked": "dim",
    "expired": "dim",
    "used up": "dim",
}


@dataclass(frozen=True)
class Column:
    """One table column: a header and how to get the cell's text from a row."""

    header: str
    key: str
    format: Callable[[Any], str] = printable
    get: Callable[[Row], Any] | None = None
    wrap: bool = False
    """Free text (paths, hostnames, comments): folds over lines when the terminal is narrow;
    the other columns keep their width."""
    styled: bool = False
    """Colour the cell by its value (severity, health, verdict …) on a colour terminal."""

    def cell(self, row: Row) -> str:
        value = self.get(row) if self.get else row.get(self.key)
        return self.format(value)


# --- writing --------------------------------------------------------------------------------


def write_json(data: Any, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    stream.flush()


def write_yaml(data: Any, stream: IO[str] | None = None) -> None:
    import yaml

    stream = stream or sys.stdout
    yaml.safe_dump(data, stream, sort_keys=False, allow_unicode=True, default_flow_style=False)
    stream.flush()


def write_data(data: Any, fmt: OutputFormat, stream: IO[str] | None = None) -> None:
    """JSON or YAML of ``data`` (what the scripted contract is)."""
    if fmt is OutputFormat.YAML:
        write_yaml(data, stream)
    else:
        write_json(data, stream)


def _csv_value(column: Column, row: Row) -> str:
    value = column.get(row) if column.get else row.get(column.key)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def write_csv(
    rows: Sequence[Row], columns: Sequence[Column], stream: IO[str] | None = None
) -> None:
    """RFC 4180 CSV: a header of field names (unless ``--no-headers``), then one line per row.

    Values are raw in a pipe; on a terminal, control characters are escaped like in tables."""
    import csv

    stream = stream or sys.stdout
    shown = printable if stream.isatty() else str
    writer = csv.writer(stream, lineterminator="\n")
    if RENDER.headers:
        writer.writerow([column.key for column in columns])
    for row in rows:
        writer.writerow([shown(_csv_value(column, row)) for column in columns])
    stream.flush()


def write_ids(rows: Sequence[Row], id_key: str, stream: IO[str] | None = None) -> None:
    """``-q``: the IDs alone, one a line, for pipes."""
    stream = stream or sys.stdout
    stream.write("".join(f"{printable(row.get(id_key))}\n" for row in rows))
    stream.flush()


def _console(stream: IO[str], width: int | None) -> Console:
    from rich.console import Console

    # TERM=dumb (an editor's shell buffer) is written to like a pipe: rich would squeeze the
    # table into 80 columns whatever width it is given.
    is_terminal = stream.isatty() and os.environ.get("TERM") != "dumb"
    if width is None and not is_terminal:
        width = 100_000  # piped: never wrap or cut a row
    # NO_COLOR (set and not empty): no escape sequence at all, bold headers included (rich
    # alone would drop the colours but keep the bold).
    plain = bool(os.environ.get("NO_COLOR")) or not is_terminal
    return Console(
        file=stream,
        width=width,
        force_terminal=is_terminal,
        color_system=None if plain else "auto",
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
    )


def _text(column: Column, row: Row) -> Text:
    from rich.text import Text

    value = column.cell(row)
    return Text(value, style=STYLES.get(value, "") if column.styled else "")


def _write(
    renderables: Sequence[RenderableType], stream: IO[str], width: int | None, min_width: int = 0
) -> None:
    console = _console(stream, width)
    if console.width < min_width:
        console.width = min_width  # too narrow a terminal: let it wrap lines, lose no cell
    with console.capture() as capture:
        for number, renderable in enumerate(renderables):
            if number:
                console.print()  # a blank line between an object and its sub-tables
            console.print(renderable)
    text = "\n".join(line.rstrip() for line in capture.get().splitlines())
    stream.write(text + "\n" if text else "")
    stream.flush()


FOLDED_MIN_WIDTH = 16
"""A free-text column (paths, hostnames) is folded over lines, but never below this width."""


def _min_table_width(rows: Sequence[Row], columns: Sequence[Column]) -> int:
    """The width below which a table would cut cells: fixed columns whole, folded ones >= 16."""
    from rich.cells import cell_len

    total = 2 * (len(columns) - 1)
    for column in columns:
        natural = max([cell_len(column.header)] + [cell_len(column.cell(row)) for row in rows])
        total += min(natural, FOLDED_MIN_WIDTH) if column.wrap else natural
    return total


def _table(rows: Sequence[Row], columns: Sequence[Column], title: str | None = None) -> Any:
    from rich.table import Table

    table = Table(
        box=None,
        pad_edge=False,
        show_edge=False,
        show_header=RENDER.headers,
        header_style="bold",
        title=title,
        title_justify="left",
        title_style="bold",
    )
    for column in columns:
        table.add_column(column.header, no_wrap=not column.wrap, overflow="fold")
    for row in rows:
        table.add_row(*(_text(column, row) for column in columns))
    return table


def _details(obj: Row, fields: Sequence[Column]) -> Any:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for field in fields:
        table.add_row(field.header, _text(field, obj))
    return table


def write_table(
    rows: Sequence[Row],
    columns: Sequence[Column],
    stream: IO[str] | None = None,
    width: int | None = None,
) -> None:
    """A table with one line per row and a header line."""
    _write([_table(rows, columns)], stream or sys.stdout, width, _min_table_width(rows, columns))


def write_details(
    obj: Row,
    fields: Sequence[Column],
    sections: Sequence[tuple[str, Sequence[Row], Sequence[Column]]] = (),
    stream: IO[str] | None = None,
    width: int | None = None,
) -> None:
    """One object as ``KEY  value`` lines, then titled sub-tables (e.g. an agent's modules)."""
    renderables = [_details(obj, fields)]
    min_width = 0
    for title, rows, columns in sections:
        if rows:
            renderables.append(_table(rows, columns, title=title))
            min_width = max(min_width, _min_table_width(rows, columns))
    _write(renderables, stream or sys.stdout, width, min_width)


def emit_list(
    page: Row,
    columns: Sequence[Column],
    fmt: OutputFormat,
    noun: str,
    stream: IO[str] | None = None,
    id_key: str | None = None,
) -> None:
    """Print the ``data`` of a page; in a table, say on stderr when there is more or nothing."""
    rows: list[Row] = page.get("data", [])
    if RENDER.quiet:
        write_ids(rows, id_key or columns[0].key, stream)
        return
    if fmt in (OutputFormat.JSON, OutputFormat.YAML):
        write_data(rows, fmt, stream)
        return
    if fmt is OutputFormat.CSV:
        write_csv(rows, columns, stream)
        return
    if not rows:
        sys.stderr.write(f"No {noun} found.\n")
        return
    write_table(rows, columns, stream)
    total = page.get("count")
    if isinstance(total, int) and (total > len(rows) or page.get("count_capped")):
        of = f"more than {total:,}" if page.get("count_capped") else f"{total}"
        sys.stderr.write(f"Showing {len(rows)} of {of} {noun}; use --limit or --all to see more.\n")


def emit_object(
    obj: Row,
    fields: Sequence[Column],
    fmt: OutputFormat,
    sections: Sequence[tuple[str, Sequence[Row], Sequence[Column]]] = (),
    stream: IO[str] | None = None,
    id_key: str | None = None,
) -> None:
    if RENDER.quiet:
        write_ids([obj], id_key or fields[0].key, stream)
    elif fmt in (OutputFormat.JSON, OutputFormat.YAML):
        write_data(obj, fmt, stream)
    elif fmt is OutputFormat.CSV:
        write_csv([obj], fields, stream)
    else:
        write_details(obj, fields, sections, stream)


class RowStream:
    """Rows printed as they come (``events watch``, ``agents list --watch``): a table's header
    once, then its lines; JSON Lines (one compact object a line); YAML documents; CSV; IDs."""

    def __init__(
        self, columns: Sequence[Column], fmt: OutputFormat, id_key: str | None = None
    ) -> None:
        self.columns, self.fmt = columns, fmt
        self.id_key = id_key or columns[0].key
        self.started = False

    def write(self, rows: Sequence[Row], stream: IO[str] | None = None) -> None:
        stream = stream or sys.stdout
        if not rows:
            return
        if RENDER.quiet:
            write_ids(rows, self.id_key, stream)
        elif self.fmt is OutputFormat.JSON:
            stream.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        elif self.fmt is OutputFormat.YAML:
            for row in rows:
                stream.write("---\n")
                write_yaml(row, stream)
        elif self.fmt is OutputFormat.CSV:
            headers, RENDER.headers = RENDER.headers, RENDER.headers and not self.started
            write_csv(rows, self.columns, stream)
            RENDER.headers = headers
        else:
            headers, RENDER.headers = RENDER.headers, RENDER.headers and not self.started
            width = _min_table_width(rows, self.columns)  # same widths as the header line
            _write([_table(rows, self.columns)], stream, None, width)
            RENDER.headers = headers
        self.started = True
        stream.flush()

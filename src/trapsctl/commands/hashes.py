"""``trapsctl hashes``: admin verdicts for SHA-256 hashes (block = malware, allow = benign)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from trapsapi.enums import Verdict
from trapsctl.options import LimitOption, NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, OutputFormat, emit_list, emit_object, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Hash verdicts: block, allow, unset, list, show.")

SHA256 = re.compile(r"[0-9a-f]{64}")


def _sha256(value: str) -> str:
    digest = value.strip().lower()
    if not SHA256.fullmatch(digest):
        raise typer.BadParameter(f"{value!r} is not a SHA-256 (64 hexadecimal characters)")
    return digest


Sha256Argument = Annotated[
    str, typer.Argument(metavar="SHA256", parser=_sha256, help="The file's SHA-256 (hex).")
]
CommentOption = Annotated[
    str,
    typer.Option(
        "--comment", "-m", metavar="TEXT", help="Why (kept with the verdict and in the audit log)."
    ),
]

VERDICT_COLUMNS = [
    Column("SHA256", "sha256"),
    Column("VERDICT", "verdict", styled=True),
    Column("SOURCE", "source"),
    Column("UPDATED", "updated_at", timestamp),
    Column("BY", "updated_by"),
    Column("COMMENT", "comment", wrap=True),
]


def _set(
    ctx: typer.Context, sha256: str, verdict: Verdict, comment: str, fmt: OutputFormat
) -> None:
    with connect(ctx) as client:
        result = client.set_verdict(sha256, verdict.value, comment)
    emit_object(result, VERDICT_COLUMNS, fmt)


@app.command("block")
def block(
    ctx: typer.Context,
    sha256: Sha256Argument,
    comment: CommentOption = "",
    output: OutputOption = None,
) -> None:
    """Mark a hash as malware: agents in prevention mode refuse to run it."""
    _set(ctx, sha256, Verdict.MALWARE, comment, output_format(ctx, output))


@app.command("allow")
def allow(
    ctx: typer.Context,
    sha256: Sha256Argument,
    comment: CommentOption = "",
    output: OutputOption = None,
) -> None:
    """Mark a hash as benign: it runs even where other verdicts would block it."""
    _set(ctx, sha256, Verdict.BENIGN, comment, output_format(ctx, output))


@app.command("unset")
def unset(ctx: typer.Context, sha256: Sha256Argument) -> None:
    """Remove the admin override of a hash (other verdict sources apply again)."""
    with connect(ctx) as client:
        client.unset_verdict(sha256)
    sys.stderr.write(f"Verdict override for {sha256} removed.\n")


@app.command("list")
def list_hashes(
    ctx: typer.Context,
    verdict: Annotated[
        Verdict | None, typer.Option("--verdict", case_sensitive=False, help="Only this verdict.")
    ] = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List hash verdicts."""
    with connect(ctx) as client:
        page = client.list_hashes(verdict=verdict.value if verdict else None, limit=limit)
    emit_list(page, VERDICT_COLUMNS, output_format(ctx, output), "hash verdicts")


@app.command("show")
def show(
    ctx: typer.Context,
    sha256: Sha256Argument,
    limit: LimitOption = 20,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Show a hash: its admin verdict (if any) and the latest events that saw it."""
    from trapsapi.errors import NotFound
    from trapsctl.commands.events import EVENT_COLUMNS

    with connect(ctx) as client:
        try:
            verdict: dict[str, Any] | None = client.get_hash(sha256)
        except NotFound:
            verdict = None
        page = client.list_events(sha256=sha256, limit=limit)
    shown = {
        "sha256": sha256,
        "verdict": verdict,
        "events": page.get("data", []),
        "events_count": page.get("count", 0),
    }
    fields = [
        Column("SHA256", "sha256"),
        Column(
            "VERDICT", "verdict", get=lambda h: (h["verdict"] or {}).get("verdict"), styled=True
        ),
        Column("SOURCE", "source", get=lambda h: (h["verdict"] or {}).get("source")),
        Column(
            "UPDATED", "updated_at", timestamp, get=lambda h: (h["verdict"] or {}).get("updated_at")
        ),
        Column("BY", "updated_by", get=lambda h: (h["verdict"] or {}).get("updated_by")),
        Column("COMMENT", "comment", get=lambda h: (h["verdict"] or {}).get("comment")),
        Column("EVENTS", "events_count"),
    ]
    emit_object(
        shown,
        fields,
        output_format(ctx, output),
        sections=[("Events", shown["events"], EVENT_COLUMNS)],
    )


def _read_verdict_lines(
    source: str, default: Verdict | None, comment: str
) -> list[tuple[str, Verdict, str]]:
    """``sha256[,verdict[,comment]]`` a line (``#`` comments, blank lines); the first bad line
    is a usage error, before anything is sent."""
    import csv

    from trapsapi.errors import UsageError

    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {source}: not UTF-8 text") from None
    wanted: list[tuple[str, Verdict, str]] = []
    for number, fields in enumerate(csv.reader(text.splitlines()), start=1):
        if not fields or not fields[0].strip() or fields[0].lstrip().startswith("#"):
            continue
        where = f"{source}:{number}"
        digest = fields[0].strip().lower()
        if not SHA256.fullmatch(digest):
            raise UsageError(f"{where}: {fields[0].strip()[:80]!r} is not a SHA-256")
        word = fields[1].strip().lower() if len(fields) > 1 and fields[1].strip() else None
        if word is None and default is None:
            raise UsageError(f"{where}: no verdict (give one per line or --verdict)")
        try:
            verdict = Verdict(word) if word else default
        except ValueError:
            raise UsageError(f"{where}: {word!r} is not a verdict (malware, benign …)") from None
        note = ",".join(fields[2:]).strip() if len(fields) > 2 else comment
        assert verdict is not None
        wanted.append((digest, verdict, note))
    return wanted


@app.command("import")
def import_hashes(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(metavar="FILE", help="Lines of sha256[,verdict[,comment]]; - for stdin."),
    ],
    verdict: Annotated[
        Verdict | None,
        typer.Option("--verdict", case_sensitive=False, help="For lines that give none."),
    ] = None,
    comment: CommentOption = "",
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """Set many verdicts from a file (a feed, a CSV export); a progress bar on a terminal.

    Every line is checked first: a bad line stops the import before anything is sent.
    """
    from trapsctl.progress import progress

    wanted = _read_verdict_lines(source, verdict, comment)
    results = []
    with connect(ctx) as client, progress(len(wanted), "Setting verdicts") as advance:
        for digest, chosen, note in wanted:
            results.append(client.set_verdict(digest, chosen.value, note))
            advance()
    page = {"data": results, "count": len(results)}
    emit_list(page, VERDICT_COLUMNS, output_format(ctx, output), "hash verdicts")
    sys.stderr.write(f"{len(results)} verdicts set.\n")

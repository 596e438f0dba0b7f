"""``trapsctl hashes``: admin verdicts for SHA-256 hashes (block = malware, allow = benign)."""

from __future__ import annotations

import re
import sys
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

"""``trapsctl hashes``: admin verdicts for SHA-256 hashes (block = malware, allow = benign)."""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer

from trapsapi.enums import Verdict
from trapsctl.options import LimitOption, OutputOption, noun_app
from trapsctl.output import Column, OutputFormat, emit_list, emit_object, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Hash verdicts: block, allow, unset, list.")

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
) -> None:
    """List hash verdicts."""
    with connect(ctx) as client:
        page = client.list_hashes(verdict=verdict.value if verdict else None, limit=limit)
    emit_list(page, VERDICT_COLUMNS, output_format(ctx, output), "hash verdicts")

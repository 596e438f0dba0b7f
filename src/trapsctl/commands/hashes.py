"""``trapsctl hashes``: admin verdicts for SHA-256 hashes (block = malware, allow = benign)."""

from __future__ import annotations

import re
import sys
from typing import Annotated, Any

import typer

from trapsapi.enums import Verdict
from trapsctl.options import LimitOption, NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import (
    Column,
    OutputFormat,
    emit_list,
    emit_object,
    joined,
    printable,
    timestamp,
)
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


IMPORT_CHUNK = 5000
FEED_COLUMNS = [
    Column("FEED", "feed"),
    Column("ENTRIES", "entries"),
    Column(
        "BY VERDICT", "by_verdict", lambda v: printable(", ".join(f"{k}={n}" for k, n in v.items()))
    ),
    Column("UPDATED", "updated_at", timestamp),
]
IMPORT_COLUMNS = [
    Column("FEED", "feed"),
    Column("RECEIVED", "received"),
    Column("INSERTED", "inserted"),
    Column("UPDATED", "updated"),
    Column("UNCHANGED", "unchanged"),
    Column("REMOVED", "removed"),
]
REPORT_COLUMNS = [
    Column("SHA256", "sha256"),
    Column("VERDICT", "verdict", styled=True),
    Column("SOURCE", "source"),
    Column("SOURCES", "sources", lambda v: joined([f"{s['source']}={s['verdict']}" for s in v])),
    Column("SEEN ON", "sightings", lambda v: joined(sorted({s["hostname"] for s in v}))),
]


@app.command("import")
def import_feed(
    ctx: typer.Context,
    file: Annotated[
        typer.FileText, typer.Argument(metavar="FILE", help="Plain list or CSV; - for stdin.")
    ],
    feed: Annotated[
        str, typer.Option("--feed", "-f", metavar="NAME", help="Feed name, e.g. abuse-ch.")
    ],
    verdict: Annotated[
        Verdict, typer.Option("--verdict", case_sensitive=False, help="For lines without one.")
    ] = Verdict.MALWARE,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop the feed's entries missing from FILE.")
    ] = False,
    output: OutputOption = None,
) -> None:
    """Import a threat-intel hash list into a feed (admin overrides still win)."""
    from trapsctl.hashfile import parse_hash_list
    from trapsctl.progress import progress

    entries = parse_hash_list(file.read(), file.name)
    totals: dict[str, Any] = {"feed": feed, "received": 0, "inserted": 0, "updated": 0}
    totals |= {"unchanged": 0, "removed": 0}
    since: str | None = None
    chunks = [entries[i : i + IMPORT_CHUNK] for i in range(0, len(entries), IMPORT_CHUNK)]
    with connect(ctx) as client, progress(len(entries), "Importing") as advance:
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            reply = client.import_hashes(feed, chunk, verdict.value, replace and last, since)
            since = since or reply["server_time"]
            for key in ("received", "inserted", "updated", "unchanged", "removed"):
                totals[key] += reply[key]
            advance(len(chunk))
    emit_object(totals, IMPORT_COLUMNS, output_format(ctx, output))


@app.command("feeds")
def list_feeds(
    ctx: typer.Context,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List imported feeds with their entry counts."""
    with connect(ctx) as client:
        feeds = client.list_feeds()
    emit_list(
        {"data": feeds, "count": len(feeds)}, FEED_COLUMNS, output_format(ctx, output), "feeds"
    )


@app.command("delete-feed")
def delete_feed(ctx: typer.Context, feed: Annotated[str, typer.Argument(metavar="FEED")]) -> None:
    """Remove every entry of a feed."""
    with connect(ctx) as client:
        client.delete_feed(feed)
    sys.stderr.write(f"Feed {feed} deleted.\n")


@app.command("show")
def show(
    ctx: typer.Context,
    sha256: Sha256Argument,
    limit: LimitOption = 20,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Show a hash: its effective verdict and where it comes from (admin override, feeds,
    agents' analysis), the hosts that ran it, and the latest events about it."""
    from trapsctl.commands.events import EVENT_COLUMNS

    with connect(ctx) as client:
        shown = client.hash_report(sha256)
        page = client.list_events(sha256=sha256, limit=limit)
    shown["events"] = page.get("data", [])
    shown["events_count"] = page.get("count", 0)
    emit_object(
        shown,
        [*REPORT_COLUMNS, Column("EVENTS", "events_count")],
        output_format(ctx, output),
        sections=[("Events", shown["events"], EVENT_COLUMNS)],
    )

"""``trapsctl forensics``: forensic bundles the ESM holds (list, show, get = download, delete)
and ``retrieve`` (a retrieve_forensics action that makes an agent upload its bundles)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from trapsapi.errors import TrapsError, UsageError
from trapsctl.commands import complete
from trapsctl.commands.actions import ACTION_FIELDS, DELIVERY_COLUMNS
from trapsctl.durations import parse_duration, parse_since
from trapsctl.options import LimitOption, NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, byte_size, emit_list, emit_object, short_hash, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Forensic bundles of security events: list, show, get, delete, retrieve.")
PROGRESS_MIN_BYTES = 1024 * 1024
"""Smaller downloads finish before a bar would be worth drawing."""
WAIT_POLL_S = 1.0


BUNDLE_COLUMNS = [
    Column("BUNDLE ID", "id"),
    Column("HOSTNAME", "hostname", wrap=True),
    Column("EVENT ID", "event_id"),
    Column("SIZE", "size", byte_size),
    Column("RECEIVED", "received_at", timestamp),
]
BUNDLE_FIELDS = [
    Column("BUNDLE ID", "id"),
    Column("AGENT ID", "agent_id"),
    Column("HOSTNAME", "hostname"),
    Column("EVENT ID", "event_id"),
    Column("AGENT'S ID", "bundle_id"),
    Column("ACTION ID", "action_id"),
    Column("SIZE", "size", byte_size),
    Column("SHA256", "sha256"),
    Column("CREATED", "created_at", timestamp),
    Column("RECEIVED", "received_at", timestamp),
]
SAVED_FIELDS = [
    Column("BUNDLE ID", "id"),
    Column("FILE", "file"),
    Column("SIZE", "size", byte_size),
    Column("SHA256", "sha256", short_hash),
]
BundleArgument = Annotated[str, typer.Argument(metavar="ID", help="The bundle's ID.")]


@app.command("list")
def list_bundles(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", metavar="ID", help="Only this agent.", autocompletion=complete.agent_ids
        ),
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", metavar="ID", help="Only this event's bundles.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", parser=parse_since, metavar="WHEN", help="Received since (1h, 7d, ISO)."
        ),
    ] = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List the bundles on the ESM, newest first (analysts and above)."""
    with connect(ctx) as client:
        page = client.list_forensics(agent_id=agent, event_id=event, since=since, limit=limit)
    emit_list(page, BUNDLE_COLUMNS, output_format(ctx, output), "forensic bundles", id_key="id")


@app.command("show")
def show(
    ctx: typer.Context,
    bundle_id: BundleArgument,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Show a bundle's metadata (agent, event, action, size, SHA-256)."""
    with connect(ctx) as client:
        bundle = client.get_forensics(bundle_id)
    emit_object(bundle, BUNDLE_FIELDS, output_format(ctx, output), id_key="id")


def _target(path: str | None, bundle: dict[str, Any]) -> Path | None:
    """Where to save (None: stdout); refuses to overwrite or to write gzip to a terminal."""
    if path == "-":
        if sys.stdout.isatty():
            raise UsageError("-O -: the bundle is gzip; redirect stdout to a file or a pipe")
        return None
    target = Path(path or f"{Path(str(bundle['bundle_id'])).name}.json.gz")
    if target.exists():
        raise UsageError(f"{target}: already exists (give another -O FILE)")
    return target


@app.command("get")
def get(
    ctx: typer.Context,
    bundle_id: BundleArgument,
    out: Annotated[
        str | None,
        typer.Option(
            "--output-file",
            "-O",
            metavar="FILE",
            help="Save here (- for stdout). Default: ./<agent's bundle ID>.json.gz.",
        ),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Download a bundle (gzip JSON), checked against its SHA-256; a progress bar on a
    terminal. Never leaves a partial file behind."""
    fmt = output_format(ctx, output)
    with connect(ctx) as client:
        bundle = client.get_forensics(bundle_id)
        target = _target(out, bundle)
        try:
            saved = _save(client, bundle, target)
        except OSError as exc:
            raise TrapsError(f"{target or 'stdout'}: {exc.strerror or exc}") from None
    if target is None:
        return
    result = {"id": bundle_id, "file": str(target), **saved}
    emit_object(result, SAVED_FIELDS, fmt, id_key="id")


def _save(client: Any, bundle: dict[str, Any], target: Path | None) -> dict[str, Any]:
    """Stream the bundle to ``target`` (None: stdout) through a ``.part`` file renamed once
    complete and checked, so that a failed download leaves nothing behind."""
    from trapsctl.progress import progress

    partial = target.with_name(f".{target.name}.part") if target else None
    sink: IO[bytes] = partial.open("wb") if partial else sys.stdout.buffer
    try:
        with progress(bundle["size"], "Downloading", PROGRESS_MIN_BYTES) as advance:

            def write(chunk: bytes) -> None:
                sink.write(chunk)
                advance(len(chunk))

            saved: dict[str, Any] = client.download_forensics(bundle["id"], write)
        sink.flush()
        if partial is not None and target is not None:
            os.fsync(sink.fileno())
            sink.close()
            partial.rename(target)
    finally:
        if partial is not None:
            sink.close()
            partial.unlink(missing_ok=True)
    return saved


@app.command("delete")
def delete(
    ctx: typer.Context,
    bundle_id: BundleArgument,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Delete a bundle from the ESM (security admins); the agent keeps its own copy."""
    with connect(ctx) as client:
        bundle = client.delete_forensics(bundle_id)
    emit_object(bundle, BUNDLE_FIELDS, output_format(ctx, output), id_key="id")


@app.command("retrieve")
def retrieve(
    ctx: typer.Context,
    agent: Annotated[
        str,
        typer.Argument(metavar="AGENT", help="The agent's ID.", autocompletion=complete.agent_ids),
    ],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", metavar="ID", help="This event's bundle (repeatable)."),
    ] = None,
    recent: Annotated[
        int | None,
        typer.Option("--recent", metavar="N", min=1, max=100, help="The N newest bundles."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", parser=parse_since, metavar="WHEN", help="Bundles written since then."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait for the agent's result (exit 1 if it failed).")
    ] = False,
    timeout: Annotated[
        str, typer.Option("--timeout", metavar="DURATION", help="How long --wait waits.")
    ] = "5m",
    expires: Annotated[
        str,
        typer.Option("--expires", metavar="DURATION", help="Undelivered after this, it expires."),
    ] = "24h",
    output: OutputOption = None,
) -> None:
    """Ask an agent to upload its bundles: of the given events, else the newest (10 unless
    --recent). With --wait, show the result once the agent has answered."""
    params: dict[str, Any] = {}
    if event:
        params["event_ids"] = event
    if recent is not None:
        params["recent"] = recent
    if since is not None:
        params["since"] = since
    limit_s = parse_duration(timeout)
    with connect(ctx) as client:
        action = client.create_action(
            "retrieve_forensics", {"agent_id": agent}, params, parse_duration(expires)
        )
        if wait:
            action = _wait(client, action, limit_s)
    deliveries = action.get("deliveries") or []
    sections = [("Agents", deliveries, DELIVERY_COLUMNS)]
    emit_object(action, ACTION_FIELDS, output_format(ctx, output), sections=sections)
    failed = [d for d in action.get("deliveries", []) if d.get("state") != "succeeded"]
    if wait and failed:
        raise TrapsError(f"retrieve_forensics {failed[0]['state']}: {failed[0].get('detail')}")


def _wait(client: Any, action: dict[str, Any], limit_s: int) -> dict[str, Any]:
    deadline = time.monotonic() + limit_s
    while not action.get("done"):
        if time.monotonic() >= deadline:
            raise TrapsError(f"action {action['id']}: no result within {limit_s} s (still queued)")
        time.sleep(WAIT_POLL_S)
        action = client.get_action(action["id"])
    return action

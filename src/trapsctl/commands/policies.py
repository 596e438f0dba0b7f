"""``trapsctl policies``: list, show, apply, export, diff, delete and the version history."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from trapsapi.errors import ApiError, UsageError
from trapsctl import policyfile
from trapsctl.options import LimitOption, NoHeadersOption, OutputOption, QuietOption, noun_app
from trapsctl.output import Column, OutputFormat, emit_list, emit_object, printable, timestamp
from trapsctl.session import connect, output_format

app = noun_app("Policies: list, show, apply -f FILE, export, diff -f FILE, delete, history.")

NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="The policy's name.")]
FileOption = Annotated[
    str,
    typer.Option("--file", "-f", metavar="FILE", help="A YAML policy file ('-': stdin)."),
]


def _targets(policy: dict[str, Any]) -> str:
    targets = policy.get("targets") or {}
    parts = []
    for side, sign in (("include", "+"), ("exclude", "-")):
        chosen = targets.get(side) or {}
        if chosen.get("all"):
            parts.append(f"{sign}all")
        for kind in ("hostnames", "labels", "groups", "os"):
            for value in chosen.get(kind) or []:
                parts.append(f"{sign}{kind.rstrip('s')}:{value}")
    return printable(" ".join(parts)) if parts else "-"


POLICY_COLUMNS = [
    Column("NAME", "name"),
    Column("PRIORITY", "priority"),
    Column("ENABLED", "enabled"),
    Column("TARGETS", "targets", get=_targets, wrap=True),
    Column("UPDATED", "updated_at", timestamp),
    Column("BY", "updated_by"),
]
POLICY_FIELDS = [
    Column("NAME", "name"),
    Column("DESCRIPTION", "description"),
    Column("PRIORITY", "priority"),
    Column("ENABLED", "enabled"),
    Column("TARGETS", "targets", get=_targets),
    Column("CREATED", "created_at", timestamp),
    Column("UPDATED", "updated_at", timestamp),
    Column("BY", "updated_by"),
]
CHANGE_COLUMNS = [Column("POLICY", "name"), Column("CHANGE", "action")]
HISTORY_COLUMNS = [
    Column("VERSION", "version"),
    Column("AT", "at", timestamp),
    Column("ACTOR", "actor"),
    Column("ACTION", "action"),
    Column("POLICIES", "policy", wrap=True),
    Column(
        "CHANGES",
        "changes",
        get=lambda r: " ".join(f"{k}:{v}" for k, v in sorted((r.get("changes") or {}).items())),
        wrap=True,
    ),
]


def _apply(client: Any, path: str, dry_run: bool, diff: bool = False) -> dict[str, Any]:
    """Send the file (to the read-only diff route when ``diff``); a 422 is the file's fault:
    one line naming the file and the field."""
    body = policyfile.load_file(path)
    try:
        result: dict[str, Any] = (
            client.diff_policies(body) if diff else client.apply_policies(body, dry_run=dry_run)
        )
    except ApiError as exc:
        if exc.status == 422:
            raise UsageError(f"{path}: {exc.message}") from None
        raise
    return result


@app.command("list")
def list_policies(
    ctx: typer.Context,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List policies: name, priority, targets, last change."""
    with connect(ctx) as client:
        page = client.list_policies()
    emit_list(page, POLICY_COLUMNS, output_format(ctx, output), "policies")


@app.command("show")
def show(ctx: typer.Context, name: NameArgument, output: OutputOption = None) -> None:
    """Show one policy; the table view ends with its rules as YAML."""
    with connect(ctx) as client:
        policy = client.get_policy(name)
    fmt = output_format(ctx, output)
    emit_object(policy, POLICY_FIELDS, fmt)
    if fmt is OutputFormat.TABLE:
        sys.stdout.write("\n" + policyfile.dump([policy]))


@app.command("apply")
def apply(
    ctx: typer.Context,
    file: FileOption,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show what would change only.")
    ] = False,
    output: OutputOption = None,
) -> None:
    """Create or update every policy of FILE by name: all of them, or none on any error."""
    with connect(ctx) as client:
        result = _apply(client, file, dry_run)
    fmt = output_format(ctx, output)
    if fmt is OutputFormat.JSON:
        emit_object(result, [], fmt)
        return
    emit_list({"data": result["changes"]}, CHANGE_COLUMNS, fmt, "policies")
    changed = sum(1 for c in result["changes"] if c["action"] != "unchanged")
    if dry_run:
        sys.stderr.write(f"Dry run: {changed} policies would change; nothing was applied.\n")
    else:
        sys.stderr.write(f"{changed} policies changed; policy version {result['version']}.\n")


@app.command("export")
def export(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="Only this policy (default: all).")
    ] = None,
    output: OutputOption = None,
) -> None:
    """Print policies as a policy file (YAML; -o json for the JSON body)."""
    with connect(ctx) as client:
        policies = [client.get_policy(name)] if name else client.list_policies()["data"]
    if output_format(ctx, output) is OutputFormat.JSON:
        emit_object({"policies": [policyfile.spec(p) for p in policies]}, [], OutputFormat.JSON)
    else:
        sys.stdout.write(policyfile.dump(policies))


@app.command("diff")
def diff(
    ctx: typer.Context,
    file: FileOption,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit with 1 when the file differs.")
    ] = False,
    output: OutputOption = None,
) -> None:
    """What applying FILE would change on the server: a unified diff (or the JSON changes).
    Any admin may diff (read permission); applying needs policies:write."""
    with connect(ctx) as client:
        result = _apply(client, file, dry_run=True, diff=True)
    changes = [c for c in result["changes"] if c["action"] != "unchanged"]
    if output_format(ctx, output) is OutputFormat.JSON:
        sys.stdout.write(json.dumps(result["changes"], indent=2, ensure_ascii=False) + "\n")
    else:
        for change in changes:
            sys.stdout.write(policyfile.unified_diff(change))
        if not changes:
            sys.stderr.write("No differences.\n")
    if exit_code and changes:
        raise typer.Exit(1)


@app.command("delete")
def delete(ctx: typer.Context, name: NameArgument) -> None:
    """Delete a policy (a new policy version; agents drop its rules at their next check-in)."""
    with connect(ctx) as client:
        client.delete_policy(name)
    sys.stderr.write(f"Policy {name} deleted.\n")


@app.command("history")
def history(
    ctx: typer.Context,
    policy: Annotated[
        str | None, typer.Option("--policy", metavar="NAME", help="Only changes of this policy.")
    ] = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """Policy versions, newest first: who changed what, when (JSON has full snapshots)."""
    with connect(ctx) as client:
        page = client.policy_history(policy=policy, limit=limit)
    emit_list(page, HISTORY_COLUMNS, output_format(ctx, output), "policy versions")

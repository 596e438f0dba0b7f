"""``trapsctl actions``: one-time actions for agents (create, list, show, cancel); the
``agents isolate|unisolate`` shortcuts; ``trapsctl quarantine`` (the server's view)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from trapsapi.enums import Health
from trapsapi.enums_actions import ActionType
from trapsapi.errors import NotFound
from trapsctl.commands.complete import agent_ids
from trapsctl.durations import parse_duration, parse_since
from trapsctl.options import (
    AllOption,
    LimitOption,
    NoHeadersOption,
    OutputOption,
    QuietOption,
    list_page,
    noun_app,
)
from trapsctl.output import Column, OutputFormat, emit_list, emit_object, short_hash, timestamp
from trapsctl.session import connect, output_format

app = noun_app("One-time actions for agents: create, list, show, cancel.")
quarantine_app = noun_app("Files quarantined on agents (reported by actions): list, restore.")
LIST_PARAMS = {"paths", "search_paths"}
"""Parameters that are lists: ``--param paths=/a --param paths=/b`` or ``paths=/a,/b``."""
QUERY_KEYS = ("hostname", "os", "health")


def _progress(action: dict[str, Any]) -> str:
    progress = action.get("progress") or {}
    return ", ".join(f"{count} {state}" for state, count in sorted(progress.items())) or "-"


def _target(action: dict[str, Any]) -> str:
    target = action.get("target") or {}
    if "query" in target:
        return "query " + " ".join(f"{k}={v}" for k, v in sorted(target["query"].items()))
    return " ".join(f"{k} {v}" for k, v in target.items())


def _result(delivery: dict[str, Any]) -> str:
    return delivery.get("detail") or (
        json.dumps(delivery["result"])[:120] if delivery.get("result") else ""
    )


ACTION_COLUMNS = [
    Column("ACTION ID", "id"),
    Column("TYPE", "type"),
    Column("TARGET", "target", get=_target, wrap=True),
    Column("PROGRESS", "progress", get=_progress),
    Column("CREATED", "created_at", timestamp),
    Column("BY", "created_by"),
]
ACTION_FIELDS = [
    Column("ACTION ID", "id"),
    Column("TYPE", "type"),
    Column("PARAMS", "params", get=lambda a: json.dumps(a.get("params") or {}, sort_keys=True)),
    Column("TARGET", "target", get=_target),
    Column("AGENTS", "agents"),
    Column("PROGRESS", "progress", get=_progress),
    Column("DONE", "done"),
    Column("CANCELLED", "cancelled"),
    Column("CREATED", "created_at", timestamp),
    Column("EXPIRES", "expires_at", timestamp),
    Column("BY", "created_by"),
    Column("COMMENT", "comment"),
]
DELIVERY_COLUMNS = [
    Column("AGENT ID", "agent_id"),
    Column("HOSTNAME", "hostname", wrap=True),
    Column("STATE", "state", styled=True),
    Column("FINISHED", "finished_at", timestamp),
    Column("RESULT", "result", get=_result, wrap=True),
]
QUARANTINE_COLUMNS = [
    Column("QUARANTINE ID", "quarantine_id"),
    Column("HOSTNAME", "hostname"),
    Column("PATH", "path", wrap=True),
    Column("SHA256", "sha256", short_hash),
    Column("SINCE", "quarantined_at", timestamp),
]


def _value(key: str, text: str) -> Any:
    if key in LIST_PARAMS:
        return [part for part in text.split(",") if part]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_pairs(pairs: list[str], option: str) -> dict[str, Any]:
    """``k=v`` options as a dict (JSON values where they parse; list parameters append)."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        value = _value(key, text)
        if key in LIST_PARAMS and key in result:
            result[key] = [*result[key], *value]
        else:
            result[key] = value
    return result


def _emit(action: dict[str, Any], fmt: OutputFormat) -> None:
    deliveries = action.get("deliveries") or []
    emit_object(action, ACTION_FIELDS, fmt, sections=[("Agents", deliveries, DELIVERY_COLUMNS)])


def _create(
    ctx: typer.Context,
    kind: str,
    target: dict[str, Any],
    params: dict[str, Any],
    expires_in_s: int,
    comment: str,
    output: OutputFormat | None,
) -> None:
    with connect(ctx) as client:
        action = client.create_action(kind, target, params, expires_in_s, comment)
    _emit(action, output_format(ctx, output))


ExpiresOption = Annotated[
    str,
    typer.Option("--expires", metavar="DURATION", help="Undelivered after this, it expires."),
]


@app.command("create")
def create(
    ctx: typer.Context,
    kind: Annotated[ActionType, typer.Argument(metavar="TYPE", case_sensitive=False)],
    agent: Annotated[str | None, typer.Option("--agent", metavar="ID", help="One agent.")] = None,
    label: Annotated[
        str | None, typer.Option("--label", metavar="LABEL", help="Every agent with the label.")
    ] = None,
    query: Annotated[
        list[str] | None,
        typer.Option(
            "--query",
            metavar="KEY=VALUE",
            help="Agents matching hostname=GLOB, os=OS, health=connected|disconnected "
            "(repeatable; resolved now, not later).",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", metavar="KEY=VALUE", help="A parameter (repeatable)."),
    ] = None,
    expires: ExpiresOption = "24h",
    comment: Annotated[str, typer.Option("--comment", "-m", metavar="TEXT")] = "",
    output: OutputOption = None,
) -> None:
    """Create an action for one agent, a label or a query; offline agents get it at their
    next check-in until it expires. Example: actions create scan --agent ID -p paths=/usr/bin"""
    given = [
        name
        for name, value in (("--agent", agent), ("--label", label), ("--query", query))
        if value
    ]
    if len(given) != 1:
        raise typer.BadParameter("give exactly one of --agent, --label, --query")
    if query:
        wanted = parse_pairs(query, "--query")
        unknown = set(wanted) - set(QUERY_KEYS)
        if unknown:
            raise typer.BadParameter(
                f"unknown key {sorted(unknown)[0]!r} (use {', '.join(QUERY_KEYS)})",
                param_hint="--query",
            )
        if "health" in wanted and wanted["health"] not in {h.value for h in Health}:
            raise typer.BadParameter(
                "health must be connected or disconnected", param_hint="--query"
            )
        target: dict[str, Any] = {"query": {k: str(v) for k, v in wanted.items()}}
    else:
        target = {"agent_id": agent} if agent else {"label": label}
    params = parse_pairs(param or [], "--param")
    _create(ctx, kind.value, target, params, parse_duration(expires), comment, output)


@app.command("list")
def list_actions(
    ctx: typer.Context,
    kind: Annotated[
        ActionType | None, typer.Option("--type", case_sensitive=False, help="Only this type.")
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", metavar="ID", help="Only for this agent.", autocompletion=agent_ids
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", metavar="WHEN", help="Created since (1h, 7d, ISO).")
    ] = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    all_rows: AllOption = False,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """List actions, newest first, with their progress."""
    with connect(ctx) as client:
        page = list_page(
            client.list_actions,
            all_rows,
            type=kind.value if kind else None,
            agent_id=agent,
            since=parse_since(since) if since else None,
            limit=limit,
        )
    emit_list(page, ACTION_COLUMNS, output_format(ctx, output), "actions")


ActionArgument = Annotated[str, typer.Argument(metavar="ID", help="The action's ID.")]


@app.command("show")
def show(ctx: typer.Context, action_id: ActionArgument, output: OutputOption = None) -> None:
    """Show an action with the state and result on every agent."""
    with connect(ctx) as client:
        action = client.get_action(action_id)
    _emit(action, output_format(ctx, output))


@app.command("cancel")
def cancel(ctx: typer.Context, action_id: ActionArgument, output: OutputOption = None) -> None:
    """Cancel an action where it is still pending (delivered ones run to their end)."""
    with connect(ctx) as client:
        action = client.cancel_action(action_id)
    _emit(action, output_format(ctx, output))


AgentArgument = Annotated[
    str, typer.Argument(metavar="ID", help="The agent's ID.", autocompletion=agent_ids)
]


def isolate(
    ctx: typer.Context,
    agent_id: AgentArgument,
    grace: Annotated[
        str,
        typer.Option(
            "--grace", metavar="DURATION", help="Roll back unless an ESM answers by then."
        ),
    ] = "120s",
    expires: ExpiresOption = "24h",
    output: OutputOption = None,
) -> None:
    """Isolate an agent from the network (its ESM servers stay reachable)."""
    params = {"grace_s": parse_duration(grace)}
    _create(ctx, "isolate", {"agent_id": agent_id}, params, parse_duration(expires), "", output)


def unisolate(
    ctx: typer.Context,
    agent_id: AgentArgument,
    expires: ExpiresOption = "24h",
    output: OutputOption = None,
) -> None:
    """Give an isolated agent its network back."""
    _create(ctx, "unisolate", {"agent_id": agent_id}, {}, parse_duration(expires), "", output)


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context,
    agent: Annotated[
        str | None,
        typer.Option("--agent", metavar="ID", help="Only this agent.", autocompletion=agent_ids),
    ] = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """Files in agents' quarantine (from quarantine and restore action results)."""
    with connect(ctx) as client:
        page = client.list_quarantine(agent_id=agent, limit=limit)
    emit_list(page, QUARANTINE_COLUMNS, output_format(ctx, output), "quarantined files")


@quarantine_app.command("restore")
def quarantine_restore(
    ctx: typer.Context,
    quarantine_id: Annotated[str, typer.Argument(metavar="ID", help="The quarantine ID.")],
    agent: Annotated[str | None, typer.Option("--agent", metavar="ID", help="The agent.")] = None,
    expires: ExpiresOption = "24h",
    output: OutputOption = None,
) -> None:
    """Create a restore action for a quarantined file (on the agent that holds it)."""
    with connect(ctx) as client:
        if agent is None:
            entries = client.list_quarantine(limit=1000)["data"]
            holders = [e["agent_id"] for e in entries if e["quarantine_id"] == quarantine_id]
            if not holders:
                raise NotFound(f"no quarantined file {quarantine_id!r} (see quarantine list)")
            agent = holders[0]
        action = client.create_action(
            "restore",
            {"agent_id": agent},
            {"quarantine_id": quarantine_id},
            parse_duration(expires),
        )
    _emit(action, output_format(ctx, output))

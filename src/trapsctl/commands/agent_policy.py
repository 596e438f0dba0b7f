"""``trapsctl agents label|group|explain``: what targets policies at an agent, and the result."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from trapsapi.errors import UsageError
from trapsctl.commands import complete
from trapsctl.options import OutputOption
from trapsctl.output import Column, emit_object, joined, printable
from trapsctl.session import connect, output_format

AgentArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID", help="The agent's ID (agents list).", autocompletion=complete.agent_ids
    ),
]

TARGETING_FIELDS = [
    Column("AGENT ID", "agent_id"),
    Column("LABELS", "labels", joined),
    Column("GROUP", "group"),
]


def _value(value: Any) -> str:
    if isinstance(value, list):
        text = ", ".join(str(v) for v in value)
        return printable(text if len(text) <= 60 else f"{text[:57]}... ({len(value)} entries)")
    if isinstance(value, str):
        return printable(value)
    return printable(json.dumps(value))


def _losers(row: dict[str, Any]) -> str:
    return "; ".join(f"{x['policy']} ({x['reason']})" for x in row.get("losers") or []) or "-"


EXPLAIN_FIELDS = [
    Column("AGENT ID", "agent_id"),
    Column("HOSTNAME", "hostname"),
    Column("OS", "os"),
    Column("LABELS", "labels", joined),
    Column("GROUP", "group"),
    Column("POLICY VERSION", "version"),
]
MATCH_COLUMNS = [
    Column("POLICY", "name"),
    Column("PRIORITY", "priority"),
    Column("SPECIFICITY", "specificity"),
    Column("MATCHED", "matched", wrap=True),
]
SKIP_COLUMNS = [Column("POLICY", "name"), Column("WHY NOT", "reason", wrap=True)]
SETTING_COLUMNS = [
    Column("SETTING", "setting"),
    Column("VALUE", "value", _value, wrap=True),
    Column("FROM", "policy", lambda v: printable(v) if v else "(built-in)"),
    Column("WHY", "reason", wrap=True),
    Column("BEAT", "losers", get=_losers, wrap=True),
]


def register(app: typer.Typer) -> None:
    """Add the verbs to the ``agents`` noun."""

    @app.command("label")
    def label(
        ctx: typer.Context,
        agent_id: AgentArgument,
        add: Annotated[
            list[str] | None, typer.Option("--add", metavar="LABEL", help="Add (repeatable).")
        ] = None,
        remove: Annotated[
            list[str] | None,
            typer.Option("--remove", metavar="LABEL", help="Remove (repeatable)."),
        ] = None,
        output: OutputOption = None,
    ) -> None:
        """Add or remove labels (policies target them); the agent gets them at its next check-in."""
        if not add and not remove:
            raise UsageError("say what to change: --add LABEL and/or --remove LABEL")
        with connect(ctx) as client:
            current = set(client.get_agent(agent_id).get("labels") or [])
            labels = sorted((current | set(add or [])) - set(remove or []))
            result = client.set_agent_labels(agent_id, labels)
        emit_object(result, TARGETING_FIELDS, output_format(ctx, output))

    @app.command("group")
    def group(
        ctx: typer.Context,
        agent_id: AgentArgument,
        name: Annotated[
            str | None, typer.Argument(metavar="[GROUP]", help="The group (omit with --clear).")
        ] = None,
        clear: Annotated[bool, typer.Option("--clear", help="Take it out of its group.")] = False,
        output: OutputOption = None,
    ) -> None:
        """Put an agent in a group (policies target groups), or --clear it."""
        if (name is None) == (not clear):
            raise UsageError("give a GROUP or --clear (not both)")
        with connect(ctx) as client:
            result = client.set_agent_group(agent_id, None if clear else name)
        emit_object(result, TARGETING_FIELDS, output_format(ctx, output))

    @app.command("explain")
    def explain(ctx: typer.Context, agent_id: AgentArgument, output: OutputOption = None) -> None:
        """The agent's effective policy: for each setting, the policy that won it and why."""
        with connect(ctx) as client:
            result = client.explain_agent_policy(agent_id)
        emit_object(
            result,
            EXPLAIN_FIELDS,
            output_format(ctx, output),
            sections=[
                ("Matching policies (strongest first)", result.get("matched") or [], MATCH_COLUMNS),
                ("Not applied", result.get("skipped") or [], SKIP_COLUMNS),
                ("Settings", result.get("settings") or [], SETTING_COLUMNS),
            ],
        )

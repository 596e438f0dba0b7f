"""``trapsctl agents``: the enrolled endpoints, their health and protection status."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from trapsapi.enums import Health
from trapsapi.errors import ExitCode, UsageError
from trapsctl.commands import actions, agent_policy, complete
from trapsctl.options import (
    AllOption,
    LimitOption,
    NoHeadersOption,
    OutputOption,
    QuietOption,
    list_page,
    noun_app,
)
from trapsctl.output import (
    Column,
    RowStream,
    emit_list,
    emit_object,
    joined,
    printable,
    timestamp,
)
from trapsctl.session import connect, output_format

app = noun_app("Agents (endpoints): list (--watch), show.")


def _modules_summary(agent: dict[str, Any]) -> str:
    modules = agent.get("modules") or []
    healthy = sum(1 for m in modules if m.get("healthy"))
    return f"{healthy}/{len(modules)} healthy" if modules else "-"


def _footprint(agent: dict[str, Any]) -> str:
    footprint = agent.get("footprint")
    if not footprint:
        return "-"
    rss_mb = footprint.get("rss_bytes", 0) / 2**20
    return f"{footprint.get('cpu_percent', 0):.2f}% CPU, {rss_mb:.1f} MiB RSS"


def _module_mode(module: dict[str, Any]) -> str:
    return printable(module.get("mode")) if module.get("enabled") else "off"


AGENT_COLUMNS = [
    Column("AGENT ID", "agent_id"),
    Column("HOSTNAME", "hostname", wrap=True),
    Column("HEALTH", "health", styled=True),
    Column("STATUS", "status", styled=True),
    Column("OS", "os"),
    Column("VERSION", "agent_version"),
    Column("LAST CHECK-IN", "last_checkin_at", timestamp),
]
AGENT_FIELDS = [
    Column("AGENT ID", "agent_id"),
    Column("HOSTNAME", "hostname"),
    Column("HEALTH", "health", styled=True),
    Column("ISSUES", "issues", joined),
    Column("STATUS", "status", styled=True),
    Column("OS", "os", get=lambda a: f"{a.get('os', '')} {a.get('os_version', '')}".strip()),
    Column("AGENT VERSION", "agent_version"),
    Column("IPS", "ips", joined),
    Column("ENROLLED", "enrolled_at", timestamp),
    Column("LAST CHECK-IN", "last_checkin_at", timestamp),
    Column("POLICY VERSION", "policy_version"),
    Column("POLICY SENT", "expected_policy_version"),
    Column("POLICY DRIFT", "policy_drift"),
    Column("LABELS", "labels", joined),
    Column("GROUP", "group"),
    Column("MODULES", "modules", get=_modules_summary),
    Column("FOOTPRINT", "footprint", get=_footprint),
    Column("OUTBOX", "outbox_depth"),
    Column("EVENTS DROPPED", "events_dropped"),
]
MODULE_COLUMNS = [
    Column("MODULE", "name"),
    Column("MODE", "mode", get=_module_mode),
    Column("MECHANISM", "mechanism"),
    Column("HEALTHY", "healthy"),
    Column("DETAIL", "detail", wrap=True),
]


@app.command("list")
def list_agents(
    ctx: typer.Context,
    health: Annotated[
        Health | None,
        typer.Option("--health", case_sensitive=False, help="Only agents in this health state."),
    ] = None,
    hostname: Annotated[
        str | None,
        typer.Option(
            "--hostname",
            metavar="TEXT",
            help="Only hostnames containing this (case-insensitive).",
            autocompletion=complete.hostnames,
        ),
    ] = None,
    limit: LimitOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch", "-w", help="Keep listing: print agents that appear or change (Ctrl-C stops)."
        ),
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", metavar="SECONDS", min=0.5, max=3600, help="--watch period."),
    ] = 5.0,
    all_rows: AllOption = False,
) -> None:
    """List agents with their health and protection status."""
    filters = {"health": health.value if health else None, "hostname": hostname, "limit": limit}
    fmt = output_format(ctx, output)
    with connect(ctx) as client:
        if not watch:
            page = list_page(client.list_agents, all_rows, **filters)
        else:
            from trapsctl.follow import changed_agents, every

            stream = RowStream(AGENT_COLUMNS, fmt)
            seen: dict[str, tuple[Any, ...]] = {}
            for _ in every(interval):
                rows = client.list_agents(**filters).get("data", [])
                stream.write(changed_agents(seen, rows))
    emit_list(page, AGENT_COLUMNS, fmt, "agents")


@app.command("show")
def show(
    ctx: typer.Context,
    agent_id: Annotated[
        str,
        typer.Argument(
            metavar="ID", help="The agent's ID (agents list).", autocompletion=complete.agent_ids
        ),
    ],
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Show one agent: identity, health, protection modules and footprint."""
    with connect(ctx) as client:
        agent = client.get_agent(agent_id)
    modules = agent.get("modules") or []
    emit_object(
        agent,
        AGENT_FIELDS,
        output_format(ctx, output),
        sections=[("Modules", modules, MODULE_COLUMNS)],
    )


AgentIdArgument = Annotated[
    str,
    typer.Argument(metavar="AGENT_ID", help="The agent's ID.", autocompletion=complete.agent_ids),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Refusing without --yes (stdin is not a terminal).")
    if not typer.confirm(question, err=True):
        raise typer.Exit(ExitCode.ERROR)


@app.command("revoke")
def revoke(ctx: typer.Context, agent_id: AgentIdArgument, yes: YesOption = False) -> None:
    """Refuse the agent's credential from its next request on (it must enroll again)."""
    _confirm(f"Revoke the credential of agent {agent_id}?", yes)
    with connect(ctx) as client:
        client.revoke_agent(agent_id)
    sys.stderr.write(f"Agent {agent_id}: credential revoked.\n")


@app.command("delete")
def delete(
    ctx: typer.Context,
    agent_id: AgentIdArgument,
    yes: YesOption = False,
    output: OutputOption = None,
) -> None:
    """Forget an agent: its record, its credential and its events."""
    _confirm(f"Delete agent {agent_id} and all its events?", yes)
    with connect(ctx) as client:
        result = client.delete_agent(agent_id)
    columns = [
        Column("AGENT", "agent_id"),
        Column("HOSTNAME", "hostname"),
        Column("EVENTS DELETED", "events_deleted"),
    ]
    emit_object(result, columns, output_format(ctx, output))


# More verbs of the noun, defined beside what they share: targeting and explain
# (agent_policy), isolation (an action: actions).
agent_policy.register(app)
app.command("isolate")(actions.isolate)
app.command("unisolate")(actions.unisolate)

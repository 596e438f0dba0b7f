"""``trapsctl events``: security events the agents reported (prevented, killed, notified):
list, show (with the process tree), triage, and watch (follow new ones live)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from trapsapi.enums import Severity, TriageStatus
from trapsctl.commands import complete
from trapsctl.durations import parse_since
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
    OutputFormat,
    RowStream,
    emit_list,
    emit_object,
    short_hash,
    timestamp,
)
from trapsctl.session import connect, output_format

app = noun_app("Security events: list, show, ack, triage, watch.")

EVENT_COLUMNS = [
    Column("TIME", "time", timestamp),
    Column("SEVERITY", "severity", styled=True),
    Column("ACTION", "action", styled=True),
    Column("MODULE", "module"),
    Column("HOSTNAME", "hostname", wrap=True),
    Column("PROCESS", "process_path", wrap=True),
    Column("SHA256", "sha256", short_hash),
    Column("USER", "user"),
]
EVENT_FIELDS = [
    Column("EVENT ID", "id"),
    Column("TIME", "time", timestamp),
    Column("RECEIVED", "received_at", timestamp),
    Column("AGENT ID", "agent_id"),
    Column("HOSTNAME", "hostname"),
    Column("SEVERITY", "severity", styled=True),
    Column("ACTION", "action", styled=True),
    Column("MODULE", "module"),
    Column("PROCESS", "process_path"),
    Column("COMMAND LINE", "cmdline"),
    Column("SHA256", "sha256"),
    Column("PID", "pid"),
    Column("USER", "user", get=lambda e: f"{e.get('user') or '-'} (uid {e.get('uid')})"),
    Column("RULE", "rule", get=lambda e: (e.get("details") or {}).get("rule")),
    Column("FORENSICS", "forensics", get=lambda e: _forensics(e)),
    Column("STATUS", "status"),
    Column("ASSIGNEE", "assignee"),
    Column("COMMENT", "comment"),
]
TREE_COLUMNS = [
    Column("PID", "pid"),
    Column("PROCESS", "tree"),
    Column("USER", "user"),
]
ID_KEY = "id"


def _forensics(event: dict[str, Any]) -> str | None:
    """The bundles on the ESM (trapsctl forensics get ID), else the agent's reference."""
    from trapsctl.ancestry import forensics_reference
    from trapsctl.output import byte_size

    stored = event.get("forensics") or []
    if stored:
        return ", ".join(
            f"{ref['id']} ({byte_size(ref.get('size'))}, on the ESM)" for ref in stored
        )
    return forensics_reference(event)


AgentOption = Annotated[
    str | None,
    typer.Option(
        "--agent", metavar="ID", help="Only this agent.", autocompletion=complete.agent_ids
    ),
]
SeverityOption = Annotated[
    Severity | None,
    typer.Option("--severity", case_sensitive=False, help="Only events at least this severe."),
]
ModuleOption = Annotated[
    str | None,
    typer.Option("--module", metavar="NAME", help="Only this protection module (e.g. malware)."),
]
StatusOption = Annotated[
    TriageStatus | None,
    typer.Option("--status", case_sensitive=False, help="Only events in this triage status."),
]
HostnameOption = Annotated[
    str | None,
    typer.Option(
        "--hostname",
        metavar="TEXT",
        help="Only hostnames containing this (case-insensitive).",
        autocompletion=complete.hostnames,
    ),
]
SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        parser=parse_since,
        metavar="WHEN",
        help="Only events since a duration ago (15m, 1h, 7d) or an ISO 8601 time.",
    ),
]


@app.command("list")
def list_events(
    ctx: typer.Context,
    agent: AgentOption = None,
    severity: SeverityOption = None,
    module: ModuleOption = None,
    since: SinceOption = None,
    limit: LimitOption = 100,
    output: OutputOption = None,
    status: StatusOption = None,
    hostname: HostnameOption = None,
    assignee: Annotated[
        str | None, typer.Option("--assignee", metavar="USER", help="Only events assigned to.")
    ] = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
    all_rows: AllOption = False,
) -> None:
    """List security events, newest first."""
    filters: dict[str, Any] = {
        "agent_id": agent,
        "severity": severity.value if severity else None,
        "module": module,
        "since": since,
        "limit": limit,
    }
    extra = {"status": status.value if status else None, "hostname": hostname, "assignee": assignee}
    filters.update({key: value for key, value in extra.items() if value is not None})
    with connect(ctx) as client:
        page = list_page(client.list_events, all_rows, **filters)
    emit_list(page, EVENT_COLUMNS, output_format(ctx, output), "events", id_key=ID_KEY)


def _event_id(value: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an event ID (a UUID)") from None


EventIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID", parser=_event_id, help="The event's ID (events list -o json | jq .[].id)."
    ),
]
EventAgentOption = Annotated[
    str | None,
    typer.Option("--agent", metavar="ID", help="The agent that sent it (only if two did)."),
]


@app.command("show")
def show(
    ctx: typer.Context,
    event_id: EventIdArgument,
    agent: EventAgentOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Show one event: process, process tree (ancestors), verdict rule, forensics, triage."""
    from trapsctl.ancestry import process_chain

    with connect(ctx) as client:
        event = client.get_event(event_id, agent_id=agent)
    tree = [
        {
            **link,
            "tree": "   " * link["depth"]
            + ("└─ " if link["depth"] else "")
            + (link["cmdline"] or link["path"] or "?"),
        }
        for link in process_chain(event)
    ]
    emit_object(
        event,
        EVENT_FIELDS,
        output_format(ctx, output),
        sections=[("Process tree", tree, TREE_COLUMNS)],
        id_key=ID_KEY,
    )


@app.command("triage")
def triage(
    ctx: typer.Context,
    event_id: EventIdArgument,
    status: Annotated[
        TriageStatus | None,
        typer.Option("--status", case_sensitive=False, help="The new triage status."),
    ] = None,
    assignee: Annotated[
        str | None,
        typer.Option("--assignee", metavar="USER", help='A user name; "" unassigns.'),
    ] = None,
    comment: Annotated[
        str | None, typer.Option("--comment", "-m", metavar="TEXT", help="The analyst's note.")
    ] = None,
    agent: EventAgentOption = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Triage (acknowledge) an event: set its status, assignee and comment."""
    if status is None and assignee is None and comment is None:
        raise typer.BadParameter("give at least one of --status, --assignee, --comment")
    with connect(ctx) as client:
        event = client.triage_event(
            event_id,
            status=status.value if status else None,
            assignee=assignee,
            comment=comment,
            agent_id=agent,
        )
    fmt = output_format(ctx, output)
    if fmt is OutputFormat.TABLE:
        triaged = [EVENT_FIELDS[0], *EVENT_FIELDS[-3:]]
        emit_object(event, triaged, fmt, id_key=ID_KEY)
    else:
        emit_object(event, EVENT_FIELDS, fmt, id_key=ID_KEY)


@app.command("ack")
def ack(
    ctx: typer.Context,
    event_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="ID...",
            help="Event IDs (e.g. from events list -q | xargs trapsctl events ack).",
        ),
    ],
    assignee: Annotated[
        str | None,
        typer.Option("--assignee", metavar="USER", help="Assign them to USER (default: you)."),
    ] = None,
    comment: Annotated[
        str | None, typer.Option("--comment", "-m", metavar="TEXT", help="The analyst's note.")
    ] = None,
    output: OutputOption = None,
    quiet: QuietOption = False,
) -> None:
    """Acknowledge events: mark them in progress and assign them (to you by default).

    One change per event, in the order given; the first error stops (earlier ones stay)."""
    acked = []
    with connect(ctx) as client:
        owner = assignee if assignee is not None else client.whoami().get("username")
        for event_id in event_ids:
            acked.append(
                client.triage_event(event_id, status="in_progress", assignee=owner, comment=comment)
            )
    fmt = output_format(ctx, output)
    columns = [EVENT_FIELDS[0], *EVENT_FIELDS[-3:]]
    emit_list({"data": acked}, columns, fmt, "events", id_key=ID_KEY)


@app.command("watch")
def watch(
    ctx: typer.Context,
    agent: AgentOption = None,
    severity: SeverityOption = None,
    module: ModuleOption = None,
    status: StatusOption = None,
    hostname: HostnameOption = None,
    tail: Annotated[
        int,
        typer.Option("--tail", metavar="N", min=0, max=1000, help="First show the last N events."),
    ] = 10,
    interval: Annotated[
        float,
        typer.Option("--interval", metavar="SECONDS", min=0.2, max=3600, help="Poll period."),
    ] = 2.0,
    output: OutputOption = None,
    quiet: QuietOption = False,
    no_headers: NoHeadersOption = False,
) -> None:
    """Follow new events live, in the order the ESM receives them (Ctrl-C stops).

    With -o json, one JSON object a line (JSON Lines); with -o yaml, one document each.
    """
    from trapsctl.follow import EventFollower, every

    filters = {
        "agent_id": agent,
        "severity": severity.value if severity else None,
        "module": module,
        "status": status.value if status else None,
        "hostname": hostname,
    }
    stream = RowStream(EVENT_COLUMNS, output_format(ctx, output), id_key=ID_KEY)
    with connect(ctx) as client:
        follower = EventFollower(client, filters)
        stream.write(follower.start(tail))
        if sys.stderr.isatty():
            sys.stderr.write("Watching for new events (Ctrl-C stops)…\n")
        for _ in every(interval):
            stream.write(follower.poll())

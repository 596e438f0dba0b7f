"""The Servers tab: the communication servers (esmd processes) sharing the ESM's database."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from trapsctl.output import printable
from trapsctl.tui.cells import ago, cell, field_lines, timestamp
from trapsctl.tui.client import DashboardClient, Obj
from trapsctl.tui.views.table_view import TableView


def alive_cell(row: Obj) -> Text:
    return Text("alive", style="green") if row.get("alive") else Text("gone", style="red")


def rate(row: Obj) -> str:
    return f"{float(row.get('requests_per_s') or 0):.1f}"


class ServersView(TableView):
    SOURCE = "servers"
    PLACEHOLDER = "/ filter servers: address, version, alive/gone …"
    COLUMNS = [
        ("ADDRESS", None),
        ("STATE", 5),
        ("VERSION", 7),
        ("AGENTS", 6),
        ("REQ/S", 5),
        ("SEEN", 8),
    ]

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        return client.list_servers()  # a handful: one page, no paging

    def server_filter(self) -> bool:
        return False

    def key_of(self, row: Obj) -> str:
        return str(row["id"])

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        return [
            cell(row.get("address")),
            alive_cell(row),
            cell(row.get("version")),
            cell(row.get("agents_served")),
            cell(rate(row)),
            ago(row.get("last_seen"), now),
        ]

    def haystack(self, row: Obj) -> str:
        parts = [row.get("address"), row.get("version"), row.get("id"), alive_cell(row).plain]
        return " ".join(str(p) for p in parts if p).lower()

    def detail(self, row: Obj, now: datetime) -> Text:
        out = Text()
        out.append(printable(row.get("address")), style="bold")
        out.append("  ")
        out.append(alive_cell(row))
        out.append("\n")
        seen = f"{timestamp(row.get('last_seen'))} ({ago(row.get('last_seen'), now).plain})"
        out.append(
            field_lines(
                [
                    ("Server", printable(row.get("id"))),
                    ("Version", printable(row.get("version"))),
                    ("Agents", f"{printable(row.get('agents_served'))} served lately"),
                    ("Requests", f"{rate(row)} per second"),
                    ("Heartbeat", seen),
                    ("Started", timestamp(row.get("started_at"))),
                ]
            )
        )
        if not row.get("alive"):
            out.append("\n\nNo heartbeat lately: the process stopped or cannot reach the database.")
        return out

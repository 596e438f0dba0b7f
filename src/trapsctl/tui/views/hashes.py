"""The Hashes tab: the admin verdicts (malware = blocked, benign = allowed) on SHA-256s."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType

from trapsctl.output import printable
from trapsctl.tui.cells import ago, cell, field_lines, styled, timestamp
from trapsctl.tui.client import PAGE_LIMIT, DashboardClient, Obj
from trapsctl.tui.views.table_view import TableView, paged


class HashesView(TableView):
    SOURCE = "hashes"
    PLACEHOLDER = "/ filter verdicts: hash, verdict, comment, admin …"
    COLUMNS = [
        ("SHA256", 16),
        ("VERDICT", 9),
        ("SOURCE", 8),
        ("UPDATED", 9),
        ("BY", None),
        ("COMMENT", None),
    ]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "set_verdict('malware')", "Block"),
        Binding("a", "set_verdict('benign')", "Allow"),
    ]

    def fetch(self, client: DashboardClient, query: str, offset: int = 0) -> Obj:
        # The server has no free-text filter here: the newest page is filtered locally.
        return client.list_hashes(limit=PAGE_LIMIT, **paged(offset))

    def server_filter(self) -> bool:
        return False

    def key_of(self, row: Obj) -> str:
        return str(row["sha256"])

    def hash_of(self, row: Obj) -> str | None:
        return self.key_of(row)

    def cells(self, row: Obj, now: datetime) -> list[Text]:
        return [
            cell(printable(row.get("sha256"))[:16]),
            styled(row.get("verdict")),
            cell(row.get("source")),
            ago(row.get("updated_at"), now),
            cell(row.get("updated_by")),
            cell(row.get("comment") or "-"),
        ]

    def haystack(self, row: Obj) -> str:
        keys = ("sha256", "verdict", "source", "updated_by", "comment")
        return " ".join(str(row.get(k)) for k in keys if row.get(k)).lower()

    def detail(self, row: Obj, now: datetime) -> Text:
        updated = f"{timestamp(row.get('updated_at'))} ({ago(row.get('updated_at'), now).plain})"
        out = field_lines(
            [
                ("SHA256", Text(printable(row.get("sha256")))),
                ("Verdict", styled(row.get("verdict"))),
                ("Source", printable(row.get("source"))),
                ("Updated", updated),
                ("By", printable(row.get("updated_by"))),
                ("Comment", Text(printable(row.get("comment") or "-"))),
            ]
        )
        out.append("\n\nb", style="bold")
        out.append(" block · ")
        out.append("a", style="bold")
        out.append(" allow")
        return out

"""Keyset pagination and capped counts for the big lists (events, agents, audit, actions).

A page at OFFSET n reads and discards n rows, and an exact count reads every matching row:
both grow with the table. Here a page continues *after* the sort key of the previous page's
last row (``WHERE (time, seq) < (t, s) ORDER BY time DESC, seq DESC LIMIT n``), which is one
index range scan however deep the page is, and the count stops at :data:`COUNT_CAP`.

The cursor is opaque to clients: base64url of JSON ``[fingerprint, key values...]``. The
fingerprint binds it to one list, its sort order and its filters, so a cursor given with
other filters is refused instead of silently skipping rows. The sort key always ends with a
unique column, so a walk returns every row that existed when it started exactly once, while
rows are inserted or deleted meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from esmd.errors import BadRequest

COUNT_CAP = 10_000
"""Counts stop here: ``count`` is exact below it, else ``count_capped`` is true."""
MAX_CURSOR = 512


@dataclass(frozen=True)
class SortKey:
    column: Any
    descending: bool = False
    kind: type = str


@dataclass(frozen=True)
class Keyset:
    """One list's sort order; its last key must be unique (a primary key)."""

    name: str
    keys: tuple[SortKey, ...]

    def order_by(self) -> list[Any]:
        return [k.column.desc() if k.descending else k.column for k in self.keys]

    def after(self, values: Sequence[Any]) -> ColumnElement[bool]:
        """Rows strictly after ``values`` in this order. The leading ``<=`` (or ``>=``) on the
        first key lets either database use its index as a range; the OR refines it."""
        first, head = self.keys[0], values[0]
        bound = first.column <= head if first.descending else first.column >= head
        strict = []
        for i, key in enumerate(self.keys):
            equal = [self.keys[j].column == values[j] for j in range(i)]
            beyond = key.column < values[i] if key.descending else key.column > values[i]
            strict.append(and_(*equal, beyond))
        return and_(bound, or_(*strict))

    def fingerprint(self, filters: Mapping[str, Any]) -> str:
        given = {k: str(v) for k, v in sorted(filters.items()) if v is not None and v != ""}
        text = json.dumps([self.name, given], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def encode(self, row: Mapping[str, Any], filters: Mapping[str, Any]) -> str:
        values: list[Any] = [self.fingerprint(filters)]
        for key in self.keys:
            value = row[key.column.key]
            values.append(value.isoformat() if isinstance(value, datetime) else value)
        raw = json.dumps(values, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str, filters: Mapping[str, Any]) -> list[Any]:
        """The key values of a cursor; BadRequest if it is not one of this list's."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            values = json.loads(raw)
        except (ValueError, binascii.Error):
            raise BadRequest("cursor: not a cursor this server returned") from None
        if not isinstance(values, list) or len(values) != len(self.keys) + 1:
            raise BadRequest("cursor: not a cursor this server returned")
        if values[0] != self.fingerprint(filters):
            raise BadRequest(
                "cursor: it belongs to another list, sort or filters; give the same ones"
            )
        return [_typed(key, value) for key, value in zip(self.keys, values[1:], strict=True)]


def _typed(key: SortKey, value: Any) -> Any:
    try:
        if key.kind is datetime and isinstance(value, str):
            return datetime.fromisoformat(value)
        if key.kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if key.kind is str and isinstance(value, str):
            return value
    except ValueError:
        pass
    raise BadRequest("cursor: not a cursor this server returned")


def start(cursor: str | None, offset: int) -> None:
    """Refuse a cursor combined with an offset (the cursor already says where to start)."""
    if cursor and offset:
        raise BadRequest("offset: give cursor or offset, not both")


def capped_count_statement(statement: Select[Any], cap: int | None = None) -> Select[Any]:
    """``SELECT count(*)`` of at most ``cap + 1`` matching rows: never a full scan."""
    cap = COUNT_CAP if cap is None else cap
    one: Select[Any] = statement.with_only_columns(literal_column("1"), maintain_column_froms=True)
    limited: Select[Any] = one.order_by(None).limit(cap + 1)
    return select(func.count()).select_from(limited.subquery())


def capped(count: int, cap: int | None = None) -> tuple[int, bool]:
    """(count, capped): a count beyond the cap is reported as the cap."""
    cap = COUNT_CAP if cap is None else cap
    return (cap, True) if count > cap else (count, False)


@dataclass(frozen=True)
class Window:
    """The rows of one page and the cursor of the next (None on the last page)."""

    rows: list[Any]
    next_cursor: str | None


def window(rows: Sequence[Any], limit: int, keyset: Keyset, filters: Mapping[str, Any]) -> Window:
    """``rows`` were fetched with ``limit + 1``: the extra row only says there is more."""
    page = list(rows[:limit])
    if len(rows) <= limit or not page:
        return Window(page, None)
    last = page[-1]
    mapping = last if isinstance(last, Mapping) else _as_mapping(last, keyset)
    return Window(page, keyset.encode(mapping, filters))


def _as_mapping(row: Any, keyset: Keyset) -> dict[str, Any]:
    mapping = getattr(row, "_mapping", None)
    if mapping is not None:
        return dict(mapping)
    return {k.column.key: getattr(row, k.column.key) for k in keyset.keys}

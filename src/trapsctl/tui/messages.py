"""Messages from the workers back to the UI (posted from threads; ``post_message`` is safe)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from trapsapi.errors import ApiError


@dataclass
class Loaded(Message):
    """A view's refresh finished: the rows of the page and the server's total count."""

    source: str
    rows: list[dict[str, Any]]
    count: int
    skipped: int = 0
    """Rows of the reply that could not be drawn (missing key, wrong types)."""
    received: int = -1
    """Rows in the reply, drawable or not (where the next page starts); -1: len(rows)."""


@dataclass
class LoadFailed(Message):
    """A view's refresh failed (the ESM is unreachable, refused the token, or errored)."""

    source: str
    error: ApiError


@dataclass
class Counted(Message):
    """A view redrew: rows shown (after the filter), rows fetched, rows on the server."""

    source: str
    shown: int
    fetched: int
    total: int
    skipped: int = 0
    first: int = 0
    """The server offset of the first row held (0: the newest rows)."""


@dataclass
class VerdictChanged(Message):
    """A block/allow went through (``result`` is the server's verdict) or failed (``error``)."""

    sha256: str
    verdict: str
    result: dict[str, Any] | None = None
    error: ApiError | None = None


@dataclass
class Triaged(Message):
    """An event's triage went through (``event`` is the server's event) or failed."""

    event_id: str
    event: dict[str, Any] | None = None
    error: ApiError | None = None


@dataclass
class Appended(Message):
    """A further page of a view (loaded on scroll): rows after those held (before them when
    ``front``: the page above a window that does not start at the first row), and the count."""

    source: str
    offset: int
    rows: list[dict[str, Any]]
    count: int
    skipped: int = 0
    received: int = 0
    front: bool = False


@dataclass
class Fetched(Message):
    """A screen's own fetch finished: ``data`` from the ESM, or ``error``."""

    key: str
    data: Any = None
    error: ApiError | None = None


@dataclass
class ActionsSent(Message):
    """Actions were created (one per agent) or cancelled: what went through, what failed."""

    verb: str
    done: list[dict[str, Any]]
    errors: list[str]

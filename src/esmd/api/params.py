"""Query parameters shared by the list routes, and the OpenAPI description of errors."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from trapsapi.models import ErrorBody

Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per page (1..1000).")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=512,
        description="next_cursor of the previous page (same filters): fast at any depth.",
    ),
]

_ERROR = {"model": ErrorBody}
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {**_ERROR, "description": "Missing, invalid, expired or revoked credential"},
    422: {**_ERROR, "description": "Invalid request (the field and the reason in one line)"},
    503: {**_ERROR, "description": "Database busy or unavailable: retry after Retry-After"},
}
ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {**_ERROR, "description": "The role of the caller may not do this"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {**_ERROR, "description": "No such object"},
}

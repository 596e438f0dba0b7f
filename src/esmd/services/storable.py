"""Checks that valid API input can also be stored identically by SQLite and PostgreSQL.

PostgreSQL text cannot hold NUL characters, both databases stop at 64-bit integers, and
free-form JSON (event details) must be strict JSON: no NaN or Infinity, valid Unicode. The
wire models allow all of these, so such input is refused here with a 422 naming the field,
the same on every database, instead of failing inside the INSERT or, worse, when the row
is read back. The hot paths call the field checks directly; ``check_storable`` walks any
model (admin requests).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from esmd.errors import BadRequest

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_no_nul(value: str | None, path: str) -> None:
    if value and "\x00" in value:
        raise BadRequest(f"{path}: must not contain NUL characters")


def check_int64(value: int | None, path: str) -> None:
    if value is not None and not INT64_MIN <= value <= INT64_MAX:
        raise BadRequest(f"{path}: out of range (64-bit integer)")


def check_finite(value: float | None, path: str) -> None:
    if value is not None and not math.isfinite(value):
        raise BadRequest(f"{path}: must be a finite number")


def check_json(value: Any, path: str) -> None:
    """Free-form JSON that every database stores and every client reads back unchanged."""
    if isinstance(value, str):
        check_no_nul(value, path)
        _check_unicode(value, path)
    elif isinstance(value, float):
        check_finite(value, path)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_unicode(key, path)
            check_no_nul(key, path)
            check_json(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{path}.{index}")


def _check_unicode(value: str, path: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{path}: must be valid Unicode (no lone surrogates)") from None


def check_storable(model: BaseModel, path: str = "") -> None:
    # The quick walk builds no field paths; only input it doubts is walked again to name one.
    if not _storable(model):
        _check_model(model, path)


def _check_model(model: BaseModel, path: str) -> None:
    for name in type(model).model_fields:
        _check(getattr(model, name), f"{path}{name}")


def _storable(value: Any) -> bool:
    """Whether :func:`_check` accepts ``value`` for sure (False: check it properly)."""
    if isinstance(value, str):
        return "\x00" not in value
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            if not _storable(getattr(value, name)):
                return False
        return True
    if isinstance(value, list):
        for item in value:
            if not _storable(item):
                return False
        return True
    return not isinstance(value, dict)  # free-form JSON: always the full check


def _check(value: Any, path: str) -> None:
    if isinstance(value, str):
        check_no_nul(value, path)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        check_int64(value, path)
    elif isinstance(value, float):
        check_finite(value, path)
    elif isinstance(value, dict):
        check_json(value, path)
    elif isinstance(value, BaseModel):
        _check_model(value, f"{path}.")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}.{index}")

"""Errors of the server and the handlers that turn every failure into ``{"detail": one line}``.

Bad input is a 4xx naming the field; an unavailable or busy database is a 503 with
Retry-After; anything unexpected is logged with its traceback and answered with a one-line
500, so no traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)
MAX_DETAIL = 300
RETRY_AFTER_S = 1


class ServiceError(Exception):
    """A refusal with an HTTP status and a one-line reason."""

    status = 400

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class BadRequest(ServiceError):
    status = 422


class Unauthorized(ServiceError):
    status = 401

    def __init__(self, detail: str) -> None:
        super().__init__(detail, {"WWW-Authenticate": "Bearer"})


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooManyRequests(ServiceError):
    status = 429

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, {"Retry-After": str(max(1, retry_after_s))})


def one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def error_response(status: int, detail: str, headers: Mapping[str, str] | None = None) -> Any:
    return JSONResponse({"detail": one_line(detail)}, status_code=status, headers=headers)


_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def describe_validation_errors(errors: Sequence[Any]) -> str:
    """The first validation error as ``field.path: reason`` (+ how many more there are)."""
    if not errors:
        return "invalid request"
    error = errors[0]
    loc = [str(part) for part in error.get("loc", ())]
    where = loc[0] if loc and loc[0] in _LOCATIONS else "body"
    path = loc[1:] if loc and loc[0] in _LOCATIONS else loc
    kind = error.get("type", "")
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "not JSON")
        position = f" at character {path[0]}" if path else ""
        return f"malformed JSON in the request body: {reason}{position}"
    if kind == "extra_forbidden":
        message = "unknown field"
    elif kind == "missing":
        message = "field required"
    else:
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    name = ".".join(path) or where
    text = f"{name}: {message}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text


async def _validation_handler(_request: Request, exc: Exception) -> Any:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, describe_validation_errors(exc.errors()))


async def _http_handler(_request: Request, exc: Exception) -> Any:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _service_handler(_request: Request, exc: Exception) -> Any:
    assert isinstance(exc, ServiceError)
    return error_response(exc.status, exc.detail, exc.headers)


async def _integrity_handler(request: Request, exc: Exception) -> Any:
    log.warning("%s %s: integrity error: %s", request.method, request.url.path, one_line(str(exc)))
    return error_response(409, "conflict with the current state; retry")


async def _data_handler(request: Request, exc: Exception) -> Any:
    log.info("%s %s: value refused by the database: %s", request.method, request.url.path, exc)
    return error_response(422, "a value of the request cannot be stored (out of range or NUL)")


async def _database_handler(request: Request, exc: Exception) -> Any:
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    return error_response(
        503, "database busy or unavailable; retry later", {"Retry-After": str(RETRY_AFTER_S)}
    )


async def _dbapi_handler(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated:
        return await _database_handler(request, exc)
    return await _unexpected_handler(request, exc)


INTERNAL_ERROR = "internal server error (logged by the server)"


async def _unexpected_handler(request: Request, exc: Exception) -> Any:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, INTERNAL_ERROR)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HTTPException, _http_handler)
    app.add_exception_handler(ServiceError, _service_handler)
    app.add_exception_handler(IntegrityError, _integrity_handler)
    app.add_exception_handler(DataError, _data_handler)
    app.add_exception_handler(OperationalError, _database_handler)
    app.add_exception_handler(PoolTimeout, _database_handler)
    app.add_exception_handler(DBAPIError, _dbapi_handler)
    # Anything else is answered by GuardMiddleware (esmd.api.middleware) with a one-line 500.

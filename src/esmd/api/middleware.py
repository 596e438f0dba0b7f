"""The outermost guard of every request: body size limit, the last-resort one-line 500, and
the request counter of ``/metrics`` (by route template, so paths with IDs stay one series)."""

from __future__ import annotations

import json
import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from esmd.errors import INTERNAL_ERROR
from esmd.metrics import Metrics

log = logging.getLogger(__name__)


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class GuardMiddleware:
    """Refuse bodies above ``max_body_bytes`` (declared or streamed) with a JSON 413; turn
    any exception no handler took into a logged, one-line JSON 500."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        method = scope.get("method", "")
        if declared is not None and declared > limit:
            self._count(scope, method, 413)
            await _reply(send, 413, BodyTooLarge(limit).detail, close=True)
            return
        received = 0
        started = False
        status = 500

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            if started:
                raise
            status = 413
            await _reply(send, 413, exc.detail, close=True)
        except Exception:
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise
            status = 500
            await _reply(send, 500, INTERNAL_ERROR)
        finally:
            self._count(scope, method, status)

    def _count(self, scope: Scope, method: str, status: int) -> None:
        if self.metrics is not None:
            route = scope.get("route")
            self.metrics.request(method, getattr(route, "path", None) or "unmatched", status)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reply(send: Send, status: int, detail: str, *, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

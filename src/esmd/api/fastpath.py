"""The agent hot routes as raw ASGI, answered before FastAPI's routing and dependencies.

A check-in or an event upload with a well-formed bearer credential and a JSON body that
validates is handled here: exact-path dispatch, ``model_validate_json`` on the same models,
the same service functions (check-ins through the group commit of
``services.checkin_group``, ``services.ingest.ingest`` looked up at call time), the reply
written as bytes (the policy part cached per policy object).
Everything unusual (no or odd credential, a body that does not validate, another path) is
handed to FastAPI with the body replayed, so error replies stay exactly those of the
declared routes, which also keep documenting the protocol in OpenAPI.

Also here, because it must be cheap and run first: the in-flight limit of the process.
Beyond ``max_in_flight`` concurrent requests the server answers 429 with a jittered
Retry-After instead of queueing without bound (the long-poll wait and health routes are
exempt: they are cheap to hold and must answer under load).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from esmd.api.routes import agent_protocol
from esmd.api.routes import wake as wake_routes
from esmd.api.wake_reply import PolicyJson, hold, wait_query
from esmd.config import Settings
from esmd.errors import ServiceError
from esmd.metrics import Metrics
from esmd.security import token_hash
from esmd.services import ingest as ingest_service
from esmd.services.checkin_group import CheckinGroups
from esmd.services.liveness import Known, Liveness, split_reply, state_digest, telemetry_of
from esmd.services.registry import Registry
from esmd.timeutil import utcnow
from trapsapi import routes
from trapsapi.models import CheckinRequest, CheckinResponse, EventBatch

_JSON_HEADERS = [(b"content-type", b"application/json")]
EXEMPT = frozenset({routes.HEALTHZ, routes.READYZ, routes.METRICS})
HOT_PATHS = frozenset({routes.AGENT_CHECKIN, routes.AGENT_EVENTS, routes.AGENT_WAIT})
WAIT_PREFIX = routes.AGENT_CHECKIN.rsplit("/", 1)[0] + "/wait"


def checkin_parts(reply: CheckinResponse, cache: PolicyJson) -> tuple[bytes, bytes]:
    """``reply`` as JSON up to its policy, and the policy's JSON (the cache's own bytes)."""
    head = reply.__pydantic_serializer__.to_json(reply, exclude={"policy"})
    return head[:-1] + b',"policy":', cache.get(reply.policy)


def _header(scope: Scope, name: bytes) -> bytes:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return b""


def base_url(scope: Scope) -> str:
    """What ``Request.base_url`` gives, without building a Request."""
    scheme = scope.get("scheme", "http")
    host = _header(scope, b"host").decode("latin-1")
    if not host:
        server = scope.get("server")
        if server:
            name, port = server
            default = {"http": 80, "https": 443}.get(scheme)
            host = name if port == default else f"{name}:{port}"
    return f"{scheme}://{host}{scope.get('root_path', '')}"


def retry_after_s(base: int) -> int:
    """``base`` to twice ``base`` seconds: refused clients do not all come back at once."""
    return base + random.randint(0, base)  # jitter, not crypto


class EsmApp(FastAPI):
    """FastAPI, except that the two hot routes go straight to esmd's outermost middleware
    (``GuardMiddleware``, then :class:`AgentFastPath`), past FastAPI's own outer layers
    (server-error page, OpenTelemetry hook, body-size hook), which do nothing for them: the
    guard already answers every failure, and the body limit is the guard's. Everything else,
    and whatever the fast path hands on, takes the usual way through the same middleware
    instances, so the in-flight limit and the metrics stay one per process."""

    _front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in HOT_PATHS:
            front = self._front or self._find_front()
            if front is not None:
                scope["app"] = self
                await front(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _find_front(self) -> ASGIApp | None:
        """The first middleware of esmd's own in the stack that FastAPI built."""
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        layer: Any = self.middleware_stack
        while layer is not None:
            if type(layer).__module__.startswith("esmd."):
                front: ASGIApp = layer
                self._front = front
                return front
            layer = getattr(layer, "app", None)
        return None


class AgentFastPath:
    """The fast path and the in-flight limit (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        fastapi: FastAPI,
        settings: Settings,
        metrics: Metrics,
        registry: Registry,
    ) -> None:
        self.app = app
        self.fastapi = fastapi
        self.settings = settings
        self.metrics = metrics
        self.registry = registry
        self.in_flight = 0
        self.max_in_flight = settings.max_in_flight
        self.policy_bytes = PolicyJson()
        self.groups: CheckinGroups | None = None
        self._servers_seen: dict[str, tuple[list[str], list[str]]] = {}
        self.alive = settings.agent_alive_window
        self.handlers: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            routes.AGENT_CHECKIN: self._checkin,
            routes.AGENT_EVENTS: self._events,
        }
        self.routes = {
            route.path: route
            for route in agent_protocol.router.routes
            if isinstance(route, APIRoute) and route.path in self.handlers
        }
        self.wait_route = next(
            r for r in wake_routes.router.routes if isinstance(r, APIRoute)
        )  # the metrics label of the long-poll

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.registry.address:
            self.registry.learn(scope.get("scheme", "http"), scope.get("server"))
        path = scope["path"]
        if path == routes.AGENT_WAIT and scope["method"] == "GET":
            await self._wait(scope, receive, send)  # exempt from the limit: cheap to hold
            return
        if path in EXEMPT or path.startswith(WAIT_PREFIX):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._refuse(scope, send)
            return
        self.in_flight += 1
        try:
            handler = self.handlers.get(path)
            if handler is not None and scope["method"] == "POST":
                scope["route"] = self.routes.get(path)  # the metrics label of the route
                await handler(scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, scope: Scope, send: Send) -> None:
        self.metrics.overloaded += 1
        self.metrics.request(scope.get("method", ""), "overloaded", 429)
        body = b'{"detail":"server busy: too many requests in flight; retry later"}'
        headers = [
            *_JSON_HEADERS,
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(retry_after_s(self.settings.retry_after_s)).encode()),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- the two hot routes ---------------------------------------------------------------
    async def _checkin(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = await self._read(scope, receive, send)
        if read is None:
            return
        credential, body = read
        servers = self._servers(scope)
        if await self._from_memory(credential, body, servers, send):
            return
        request = _parse(CheckinRequest, body)
        if request is None:
            await self.app(scope, _replay(body, receive), send)
            return
        assert isinstance(request, CheckinRequest)
        try:
            reply, fixed = await self._checkin_groups().checkin_fixed(credential, request, servers)
        except Exception as exc:
            await self._error(scope, receive, send, exc)
            return
        self.metrics.checkins += 1
        self.registry.saw_agent(reply.agent_id)
        self.fastapi.state.notifier.saw_version(reply.policy.version)
        head, policy = checkin_parts(reply, self.policy_bytes)
        cut = split_reply(head, reply.server_time) if fixed is not None else None
        known = None
        if cut is not None:
            known = Known(
                reply.agent_id, credential.encode(), token_hash(credential.partition(".")[2]),
                body, state_digest(request),
                telemetry_of(request), reply.policy.version, servers, *cut, policy, fixed,
            )  # fmt: skip
        self._liveness().learn(known, reply.agent_id)
        await _send_json(send, 200, head + policy + b"}")

    async def _from_memory(
        self, credential: str, body: bytes, servers: list[str], send: Send
    ) -> bool:
        """Answer a repeated check-in without a transaction (``esmd.services.liveness``)."""
        liveness = self._liveness()
        agent_id = credential.partition(".")[0]
        version = self.fastapi.state.notifier.policy_version
        known = liveness.get(agent_id, credential.encode(), version)
        if known is None or servers != known.servers:
            return False
        telemetry = known.telemetry
        if body != known.body:
            request = _parse(CheckinRequest, body)
            if not isinstance(request, CheckinRequest) or state_digest(request) != known.state:
                return False
            try:
                telemetry = telemetry_of(request)
            except ServiceError:
                return False  # the full way answers it
        now = utcnow()
        liveness.touch(known, now, telemetry)
        self.metrics.checkins += 1
        self.registry.saw_agent(agent_id)
        reply = b"".join((known.head, to_json(now), known.tail, known.policy, b"}"))
        await _send_json(send, 200, reply)
        return True

    def _liveness(self) -> Liveness:
        liveness: Liveness = self.fastapi.state.liveness
        return liveness

    def _servers(self, scope: Scope) -> list[str]:
        """``registry.servers_for`` the request's base URL, kept until the live list changes
        (the registry replaces it on each beat; settings' attributes are slow to read)."""
        url = base_url(scope)
        live = self.registry.live
        hit = self._servers_seen.get(url)
        if hit is not None and hit[0] is live:
            return hit[1]
        if len(self._servers_seen) >= 64:  # the Host header is the client's: stay bounded
            self._servers_seen.clear()
        servers = self.registry.servers_for(url)
        self._servers_seen[url] = (live, servers)
        return servers

    def _checkin_groups(self) -> CheckinGroups:
        """The group-commit writer of the app's database (made on first use, after startup)."""
        state = self.fastapi.state
        if self.groups is None or self.groups.db is not state.db:
            self.groups = CheckinGroups(state.db, state.policies, self.alive)
        return self.groups

    async def _events(self, scope: Scope, receive: Receive, send: Send) -> None:
        prepared = await self._prepare(scope, receive, send, EventBatch)
        if prepared is None:
            return
        credential, batch = prepared
        assert isinstance(batch, EventBatch)
        try:
            ack = await self.fastapi.state.db.run(ingest_service.ingest, credential, batch)
        except Exception as exc:
            await self._error(scope, receive, send, exc)
            return
        self.metrics.events_received += len(ack.acked)
        self.metrics.events_ingested += ack.inserted
        await _send_json(send, 200, ack.__pydantic_serializer__.to_json(ack))

    # --- the long-poll (wake channel) -----------------------------------------------------
    async def _wait(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The wake channel's long-poll; anything unusual goes to the declared route."""
        query = wait_query(scope.get("query_string", b""))
        scheme, _, credential = _header(scope, b"authorization").decode("latin-1").partition(" ")
        credential = credential.strip()
        if query is None or scheme.lower() != "bearer" or "." not in credential:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.wait_route
        try:
            status, body = await hold(
                self.fastapi.state, credential, *query, client=scope.get("client")
            )
        except Exception as exc:
            await self._error(scope, receive, send, exc)
            return
        if status == 204:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await _send_json(send, status, body)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, bytes] | None:
        """(bearer credential, JSON body); None after FastAPI answered an unusual request."""
        try:
            body = await _read_body(receive)
        except HTTPException as exc:  # the body limit: answered as the routes answer it
            await self._error(scope, receive, send, exc)
            return None
        scheme, _, credential = _header(scope, b"authorization").decode("latin-1").partition(" ")
        credential = credential.strip()
        content_type = _header(scope, b"content-type").split(b";", 1)[0].strip().lower()
        if scheme.lower() == "bearer" and "." in credential and content_type == b"application/json":
            return credential, body
        await self.app(scope, _replay(body, receive), send)
        return None

    async def _prepare(
        self, scope: Scope, receive: Receive, send: Send, model: type[BaseModel]
    ) -> tuple[str, BaseModel] | None:
        """(credential, validated body), or None after FastAPI answered an unusual request."""
        read = await self._read(scope, receive, send)
        if read is None:
            return None
        parsed = _parse(model, read[1])
        if parsed is not None:
            return read[0], parsed
        await self.app(scope, _replay(read[1], receive), send)
        return None

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """Answer with the app's own exception handler (same status and body as FastAPI)."""
        handlers = self.fastapi.exception_handlers
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                response = handler(Request(scope, receive), exc)
                if inspect.isawaitable(response):
                    response = await response
                await response(scope, receive, send)
                return
        raise exc  # GuardMiddleware logs it and answers a one-line 500


def _parse(model: type[BaseModel], body: bytes) -> BaseModel | None:
    try:
        return model.model_validate_json(body)
    except ValidationError:
        return None


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_json(send: Send, status: int, body: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

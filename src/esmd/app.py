"""The FastAPI application factory (no import-time state: everything hangs off the app)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from esmd import __version__
from esmd.api.fastpath import AgentFastPath, EsmApp
from esmd.api.middleware import GuardMiddleware
from esmd.api.routes import (
    actions,
    agent_protocol,
    agents,
    api_tokens,
    audit,
    auth,
    events,
    hash_intel,
    hashes,
    health,
    policies,
    server_info,
    tokens,
    users,
)
from esmd.api.routes import forensics as forensics_routes
from esmd.api.routes import servers as servers_routes
from esmd.api.routes import wake as wake_routes
from esmd.api.wake_reply import Repolls, WakeNews
from esmd.config import Settings
from esmd.db.engine import Database
from esmd.errors import install_error_handlers
from esmd.metrics import Metrics
from esmd.ops.runner import Operations
from esmd.runtime import background
from esmd.services.actions import sweep_forever
from esmd.services.liveness import Liveness
from esmd.services.policy import PolicyCache
from esmd.services.registry import Registry
from esmd.services.wake import Notifier
from esmd.setup import check_schema, describe_url

log = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(settings: Settings) -> FastAPI:
    """A communication server for ``settings``; the database is opened by the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database.from_url(settings.url, settings.db_pool_size, settings.db_max_overflow)
        try:
            check_schema(db.engine)
            app.state.db = db
            app.state.policies = PolicyCache(settings.heartbeat_interval_s)
            WakeNews(db, app.state.policies, settings).attach(app.state.notifier)
            app.state.repolls = repolls = Repolls(settings.wait_timeout_s)
            app.state.liveness = liveness = Liveness(db, settings.liveness_flush_s)
            notifier = app.state.notifier

            def credentials_changed(agent_ids: list[str]) -> None:
                repolls.forget(agent_ids)
                liveness.forget(agent_ids)

            notifier.credentials_listener = credentials_changed
            notifier.news_listener = liveness.forget
            log.info("esmd %s serving database %s", __version__, describe_url(settings.url))
            app.state.operations = operations = Operations(db, settings)
            metrics.collectors.append(operations.render)
            operations.start()
            sweeper = asyncio.create_task(sweep_forever(db))
            try:
                async with background(settings, db, app.state.notifier, app.state.registry):
                    liveness.start()
                    try:
                        yield
                    finally:
                        await liveness.stop()  # the last check-ins' liveness is written
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                operations.stop()
                metrics.collectors.remove(operations.render)
        finally:
            db.dispose()

    app = EsmApp(
        title="Traps Endpoint Security Manager",
        version=__version__,
        summary="Agent protocol and admin API of esmd.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
    )
    app.state.settings = settings
    app.state.metrics = metrics = Metrics()
    app.state.notifier = Notifier(metrics, settings.wake_rate, 2.0 * settings.wait_timeout_s)
    app.state.registry = registry = Registry(settings, metrics)
    install_error_handlers(app)
    for module in (
        health,
        auth,
        agent_protocol,
        agents,
        events,
        hashes,
        hash_intel,
        tokens,
        users,
        api_tokens,
        audit,
        policies,
        actions,
        server_info,
        wake_routes,
        servers_routes,
        forensics_routes,
    ):
        app.include_router(module.router)
    app.include_router(actions.agent_router)
    app.add_middleware(
        AgentFastPath, fastapi=app, settings=settings, metrics=metrics, registry=registry
    )
    app.add_middleware(GuardMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    _one_line_errors_in_openapi(app)
    return app


def _one_line_errors_in_openapi(app: FastAPI) -> None:
    """Document the real 422 body (``ErrorBody``), not FastAPI's list of validation errors,
    and the agent credential of the hot routes (which read their header themselves)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                reply = operation.get("responses", {}).get("422")
                if reply is not None:
                    reply["description"] = "Invalid request (the field and the reason in one line)"
                    reply["content"] = {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    }
        components = schema.setdefault("components", {})
        _add_body_schemas(components.setdefault("schemas", {}))
        components.get("schemas", {}).pop("HTTPValidationError", None)
        components.get("schemas", {}).pop("ValidationError", None)
        components.setdefault("securitySchemes", {})["AgentCredential"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "`<agent_id>.<agent_secret>` as returned by enrollment.",
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_body_schemas(schemas: dict[str, Any]) -> None:
    """Request bodies a route validates itself (for clearer errors) and documents with
    ``openapi_extra`` referencing ``#/components/schemas/<Model>``: their schemas."""
    from trapsapi.models_policies import PolicyFile

    for model in (PolicyFile,):
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, definition in found.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas.setdefault(model.__name__, found)

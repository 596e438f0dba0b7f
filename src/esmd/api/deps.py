"""Dependencies of the routes: the database, the settings and who is calling.

Dependencies that do no I/O are ``async`` so that they cost no threadpool hop; those that
query the database are plain functions (FastAPI runs them in its threadpool).

Admin and agent credentials are both bearer tokens but can never stand in for each other:
an agent credential is ``<agent_id>.<secret>`` (a dot), an admin token never has a dot.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from esmd.authz import Permission, allows
from esmd.config import Settings
from esmd.db.engine import Database
from esmd.errors import Forbidden, Unauthorized
from esmd.metrics import Metrics
from esmd.services.accounts import AdminIdentity, authenticate_admin
from esmd.services.agents import AgentIdentity, authenticate_agent
from esmd.services.policy import PolicyCache
from trapsapi.enums import Role


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def get_session(db: DatabaseDep) -> Iterator[Session]:
    """A read session, closed when the route function returns."""
    with db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_admin_bearer = HTTPBearer(
    scheme_name="AdminToken",
    description="The token of `POST /api/v1/auth/login`.",
    auto_error=False,
)
_agent_bearer = HTTPBearer(
    scheme_name="AgentCredential",
    description="`<agent_id>.<agent_secret>` as returned by enrollment.",
    auto_error=False,
)


def _bearer(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing credential: send Authorization: Bearer <token>")
    return credentials.credentials


def get_current_admin(
    request: Request,
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
) -> AdminIdentity:
    client = request.client
    return authenticate_admin(db, _bearer(credentials), client.host if client else None)


CurrentAdmin = Annotated[AdminIdentity, Depends(get_current_admin)]
"""Any signed-in admin, with no permission check: use ``require`` in routes instead."""

PERMISSION_ATTRIBUTE = "__esmd_permission__"


def _declare(function: Any, permission: Permission) -> None:
    setattr(function, PERMISSION_ATTRIBUTE, permission)


def declared_permission(call: object) -> Permission | None:
    """The permission a dependency declares (see ``require``, ``public``), if any."""
    value = getattr(call, PERMISSION_ATTRIBUTE, None)
    return value if isinstance(value, Permission) else None


@functools.cache
def _checker(permission: Permission) -> Callable[..., Coroutine[Any, Any, AdminIdentity]]:
    async def check(admin: CurrentAdmin) -> AdminIdentity:
        if not allows(admin.role, permission):
            raise Forbidden(
                f"this needs the permission {permission.value!r}, which the role "
                f"{admin.role.value!r} of {admin.username!r} does not have"
            )
        return admin

    check.__name__ = f"require_{permission.name.lower()}"
    _declare(check, permission)
    return check


def require(permission: Permission) -> Any:
    """The dependency of an admin route: the caller, if their role has ``permission``.

    Use as ``Annotated[AdminIdentity, require(Permission.X)]``; the route declares X.
    """
    if permission in (Permission.PUBLIC, Permission.AGENT):
        raise ValueError(f"{permission} is not an admin permission")
    return Depends(_checker(permission))


async def _public() -> None:
    """Marks a route that needs no credential."""


_declare(_public, Permission.PUBLIC)
PUBLIC: Any = Depends(_public)
"""``dependencies=[PUBLIC]`` on a route that anyone may call."""

SignedIn = Annotated[AdminIdentity, require(Permission.SESSION)]
Reader = Annotated[AdminIdentity, require(Permission.READ)]
Triager = Annotated[AdminIdentity, require(Permission.EVENTS_TRIAGE)]
HashWriter = Annotated[AdminIdentity, require(Permission.HASHES_WRITE)]
AgentWriter = Annotated[AdminIdentity, require(Permission.AGENTS_WRITE)]
EnrollmentWriter = Annotated[AdminIdentity, require(Permission.ENROLLMENT_WRITE)]
AuditReader = Annotated[AdminIdentity, require(Permission.AUDIT_READ)]
UsersAdmin = Annotated[AdminIdentity, require(Permission.USERS_ADMIN)]
ApiTokensAdmin = Annotated[AdminIdentity, require(Permission.API_TOKENS_ADMIN)]
ForensicsReader = Annotated[AdminIdentity, require(Permission.FORENSICS_READ)]
ForensicsDeleter = Annotated[AdminIdentity, require(Permission.FORENSICS_DELETE)]


async def get_superuser(admin: CurrentAdmin) -> AdminIdentity:
    admin.require(Role.SUPERUSER)
    return admin


Superuser = Annotated[AdminIdentity, Depends(get_superuser)]
"""Kept for callers outside this package; routes declare a ``Permission`` instead."""


async def get_agent_credential(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_agent_bearer)],
) -> str:
    """The raw ``<agent_id>.<secret>``, verified by the route inside its transaction; an
    admin token (no dot) is refused here, before the body is even validated."""
    credential = _bearer(credentials)
    if "." not in credential:
        raise Unauthorized("not an agent credential")
    return credential


_declare(get_agent_credential, Permission.AGENT)
AgentCredential = Annotated[str, Depends(get_agent_credential)]


def get_current_agent(db: DatabaseDep, credential: AgentCredential) -> AgentIdentity:
    """The authenticated agent, for agent routes that are not hot paths."""
    return authenticate_agent(db, credential)


CurrentAgent = Annotated[AgentIdentity, Depends(get_current_agent)]


@dataclass(frozen=True)
class AgentCall:
    """Everything a hot agent route needs, from one dependency (each costs ~30 µs)."""

    db: Database
    settings: Settings
    policies: PolicyCache
    credential: str
    servers: list[str]
    metrics: Metrics


async def get_agent_call(request: Request) -> AgentCall:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("missing credential: send Authorization: Bearer <token>")
    if "." not in credential:  # an admin token: refused before the body is even read
        raise Unauthorized("not an agent credential")
    state = request.app.state
    settings: Settings = state.settings
    servers = state.registry.servers_for(str(request.base_url))
    return AgentCall(state.db, settings, state.policies, credential.strip(), servers, state.metrics)


_declare(get_agent_call, Permission.AGENT)


AgentCallDep = Annotated[AgentCall, Depends(get_agent_call)]
AGENT_SECURITY: dict[str, object] = {"security": [{"AgentCredential": []}]}
"""OpenAPI of the hot routes, which read the header themselves instead of via HTTPBearer."""

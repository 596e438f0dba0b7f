"""Dependencies of the routes: the database, the settings and who is calling.

Dependencies that do no I/O are ``async`` so that they cost no threadpool hop; those that
query the database are plain functions (FastAPI runs them in its threadpool).

Admin and agent credentials are both bearer tokens but can never stand in for each other:
an agent credential is ``<agent_id>.<secret>`` (a dot), an admin token never has a dot.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.errors import Unauthorized
from esmd.services.accounts import AdminIdentity, authenticate_admin
from esmd.services.agents import AgentIdentity, authenticate_agent
from esmd.services.policy import PolicyCache
from trapsapi.enums import Role


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DatabaseDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


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
    db: DatabaseDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_admin_bearer)],
) -> AdminIdentity:
    return authenticate_admin(db, _bearer(credentials))


CurrentAdmin = Annotated[AdminIdentity, Depends(get_current_admin)]


async def get_superuser(admin: CurrentAdmin) -> AdminIdentity:
    admin.require(Role.SUPERUSER)
    return admin


Superuser = Annotated[AdminIdentity, Depends(get_superuser)]


async def get_agent_credential(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_agent_bearer)],
) -> str:
    """The raw ``<agent_id>.<secret>``; the hot paths verify it inside their transaction."""
    return _bearer(credentials)


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


async def get_agent_call(request: Request) -> AgentCall:
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthorized("missing credential: send Authorization: Bearer <token>")
    state = request.app.state
    settings: Settings = state.settings
    servers = settings.servers_for(str(request.base_url))
    return AgentCall(state.db, settings, state.policies, credential.strip(), servers)


AgentCallDep = Annotated[AgentCall, Depends(get_agent_call)]
AGENT_SECURITY: dict[str, object] = {"security": [{"AgentCredential": []}]}
"""OpenAPI of the hot routes, which read the header themselves instead of via HTTPBearer."""

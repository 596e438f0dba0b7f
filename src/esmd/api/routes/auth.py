"""Admin login, logout, who-am-I and changing one's own password."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from esmd.api.deps import PUBLIC, DatabaseDep, SettingsDep, SignedIn
from esmd.api.params import ADMIN_ERRORS, ERRORS
from esmd.services import accounts, users
from esmd.services.storable import check_storable
from trapsapi import routes
from trapsapi.models import ErrorBody, LoginRequest, LoginResponse, PasswordChange, UserPublic

router = APIRouter(tags=["auth"])


@router.post(
    routes.LOGIN,
    dependencies=[PUBLIC],
    responses={
        **ERRORS,
        429: {"model": ErrorBody, "description": "Too many failed logins: see Retry-After"},
    },
)
def login(
    body: LoginRequest, request: Request, db: DatabaseDep, settings: SettingsDep
) -> LoginResponse:
    """Trade a user name and password for an expiring bearer token (audited, failures too)."""
    check_storable(body)
    client = request.client.host if request.client else None
    return accounts.login(db, settings, body.username, body.password, client)


@router.post(routes.LOGOUT, status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def logout(admin: SignedIn, db: DatabaseDep) -> None:
    """Revoke the credential of this request (a login session, or an API token)."""
    accounts.logout(db, admin)


@router.get(routes.WHOAMI, responses=ADMIN_ERRORS)
async def whoami(admin: SignedIn) -> UserPublic:
    return UserPublic(username=admin.username, role=admin.role)


@router.put(routes.PASSWORD, status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def change_password(body: PasswordChange, admin: SignedIn, db: DatabaseDep) -> None:
    """Change one's own password (the current one is asked again); other sessions end."""
    check_storable(body)
    users.change_own_password(db, admin, body.current_password, body.new_password)

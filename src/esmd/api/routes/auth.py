"""Admin login, logout and who-am-I."""

from __future__ import annotations

from fastapi import APIRouter, status

from esmd.api.deps import CurrentAdmin, DatabaseDep, SettingsDep
from esmd.api.params import ADMIN_ERRORS, ERRORS
from esmd.services import accounts
from esmd.services.storable import check_storable
from trapsapi import routes
from trapsapi.models import ErrorBody, LoginRequest, LoginResponse, UserPublic

router = APIRouter(tags=["auth"])


@router.post(
    routes.LOGIN,
    responses={
        **ERRORS,
        429: {"model": ErrorBody, "description": "Too many failed logins: see Retry-After"},
    },
)
def login(body: LoginRequest, db: DatabaseDep, settings: SettingsDep) -> LoginResponse:
    """Trade a user name and password for an expiring bearer token."""
    check_storable(body)
    return accounts.login(db, settings, body.username, body.password)


@router.post(routes.LOGOUT, status_code=status.HTTP_204_NO_CONTENT, responses=ADMIN_ERRORS)
def logout(admin: CurrentAdmin, db: DatabaseDep) -> None:
    """Revoke the token of this request."""
    accounts.logout(db, admin)


@router.get(routes.WHOAMI, responses=ADMIN_ERRORS)
async def whoami(admin: CurrentAdmin) -> UserPublic:
    return UserPublic(username=admin.username, role=admin.role)

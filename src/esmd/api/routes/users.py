"""Users: listed, created, re-roled and deleted by superusers only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from sqlalchemy import func
from sqlmodel import col, select

from esmd.api.deps import DatabaseDep, SessionDep, UsersAdmin
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.db.tables import User
from esmd.services import users
from esmd.services.storable import check_storable
from trapsapi import routes
from trapsapi.enums import Role
from trapsapi.models import ErrorBody, Page, UserCreate, UserRecord, UserUpdate

router = APIRouter(tags=["users"], responses=ADMIN_ERRORS)
UsernamePath = Annotated[str, Path(max_length=128)]
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Conflicts with the current users"}
}


@router.get(routes.USERS)
def list_users(
    session: SessionDep,
    _admin: UsersAdmin,
    role: Role | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[UserRecord]:
    """By user name; password hashes are never shown."""
    statement = select(User)
    if role is not None:
        statement = statement.where(col(User.role) == role.value)
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(statement.order_by(col(User.username)).offset(offset).limit(limit)).all()
    return Page[UserRecord](data=[users.user_record(r) for r in rows], count=count)


@router.post(routes.USERS, status_code=status.HTTP_201_CREATED, responses=CONFLICT)
def create_user(body: UserCreate, db: DatabaseDep, admin: UsersAdmin) -> UserRecord:
    check_storable(body)
    return users.create_user(db, admin, body)


@router.patch(f"{routes.USERS}/{{username}}", responses={**NOT_FOUND, **CONFLICT})
def set_user_role(
    username: UsernamePath, body: UserUpdate, db: DatabaseDep, admin: UsersAdmin
) -> UserRecord:
    """Change the role; it applies from the user's next request on."""
    return users.set_role(db, admin, username, body.role)


@router.delete(
    f"{routes.USERS}/{{username}}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**NOT_FOUND, **CONFLICT},
)
def delete_user(username: UsernamePath, db: DatabaseDep, admin: UsersAdmin) -> None:
    """Delete a user with their sessions and API tokens (not yourself, not the last superuser)."""
    users.delete_user(db, admin, username)

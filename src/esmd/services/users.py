"""Users and API tokens, as the superuser manages them (every change audited)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from esmd.db.engine import Database
from esmd.db.tables import ADMIN_SESSIONS, ApiToken, User
from esmd.errors import BadRequest, Conflict, NotFound, Unauthorized
from esmd.security import hash_password, new_token, token_hash, verify_password
from esmd.services.accounts import API_TOKEN_PREFIX, AdminIdentity
from esmd.services.audit import audit, revoke_audited
from esmd.timeutil import utcnow
from trapsapi.enums import Role
from trapsapi.models import ApiTokenCreate, ApiTokenPublic, UserCreate, UserRecord


def user_record(row: User) -> UserRecord:
    return UserRecord(username=row.username, role=Role(row.role), created_at=row.created_at)


def find_user(session: Session, username: str) -> User:
    row = session.exec(select(User).where(col(User.username) == username)).first()
    if row is None:
        raise NotFound(f"no user {username!r}")
    return row


def _superusers(session: Session) -> int:
    return int(
        session.exec(
            select(func.count()).select_from(User).where(col(User.role) == Role.SUPERUSER.value)
        ).one()
    )


def create_user(db: Database, admin: AdminIdentity, request: UserCreate) -> UserRecord:
    hashed = hash_password(request.password)
    with db.write_session() as session:
        if session.exec(select(User.id).where(col(User.username) == request.username)).first():
            raise Conflict(f"a user {request.username!r} exists already")
        row = User(
            username=request.username,
            password_hash=hashed,
            role=request.role.value,
            created_at=utcnow(),
        )
        session.add(row)
        audit(
            session,
            admin.username,
            "user.create",
            request.username,
            {"role": request.role.value},
            source_ip=admin.source_ip,
        )
        return user_record(row)


def set_role(db: Database, admin: AdminIdentity, username: str, role: Role) -> UserRecord:
    with db.write_session() as session:
        row = find_user(session, username)
        previous = Role(row.role)
        if previous is Role.SUPERUSER and role is not Role.SUPERUSER and _superusers(session) <= 1:
            raise Conflict(f"{username!r} is the last superuser; make another one first")
        row.role = role.value
        session.add(row)
        audit(
            session,
            admin.username,
            "user.set_role",
            username,
            {"role": role.value, "previous": previous.value},
            source_ip=admin.source_ip,
        )
        return user_record(row)


def delete_user(db: Database, admin: AdminIdentity, username: str) -> None:
    """Delete a user; their sessions and API tokens go with them (the audit log stays)."""
    if username == admin.username:
        raise Conflict("you cannot delete yourself; ask another superuser")
    with db.write_session() as session:
        row = find_user(session, username)
        if row.role == Role.SUPERUSER.value and _superusers(session) <= 1:
            raise Conflict(f"{username!r} is the last superuser")
        session.delete(row)
        audit(
            session,
            admin.username,
            "user.delete",
            username,
            {"role": row.role},
            source_ip=admin.source_ip,
        )


def change_own_password(db: Database, admin: AdminIdentity, current: str, new: str) -> None:
    if current == new:
        raise BadRequest("new_password: must differ from the current password")
    with db.session() as session:
        row = session.get(User, admin.user_id)
        if row is None or not verify_password(row.password_hash, current):
            raise Unauthorized("current_password: wrong password")
    hashed = hash_password(new)
    with db.write_session() as session:
        row = session.get(User, admin.user_id)
        if row is None:
            raise Unauthorized("this user no longer exists")
        row.password_hash = hashed
        session.add(row)
        session.execute(
            update(ADMIN_SESSIONS)
            .where(
                ADMIN_SESSIONS.c.user_id == admin.user_id,
                ADMIN_SESSIONS.c.id != admin.session_id,
            )
            .values(revoked=True)
        )
        audit(
            session,
            admin.username,
            "user.change_password",
            admin.username,
            {},
            source_ip=admin.source_ip,
        )


def api_token_public(row: ApiToken, username: str, plain: str | None = None) -> ApiTokenPublic:
    return ApiTokenPublic(
        id=row.id,
        name=row.name,
        username=username,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked=row.revoked,
        last_used_at=row.last_used_at,
        token=plain,
    )


def create_api_token(db: Database, admin: AdminIdentity, request: ApiTokenCreate) -> ApiTokenPublic:
    plain = API_TOKEN_PREFIX + new_token()
    now = utcnow()
    with db.write_session() as session:
        user = session.exec(select(User).where(col(User.username) == request.username)).first()
        if user is None:
            raise BadRequest(f"username: no user {request.username!r}")
        assert user.id is not None
        row = ApiToken(
            id=secrets.token_hex(8),
            name=request.name,
            token_hash=token_hash(plain),
            user_id=user.id,
            created_at=now,
            created_by=admin.username,
            expires_at=(
                now + timedelta(seconds=request.expires_in_s) if request.expires_in_s else None
            ),
            revoked=False,
        )
        session.add(row)
        audit(
            session,
            admin.username,
            "api_token.create",
            row.id,
            {
                "name": row.name,
                "username": user.username,
                "role": user.role,
                "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            },
            source_ip=admin.source_ip,
        )
        return api_token_public(row, user.username, plain)


def revoke_api_token(db: Database, admin: AdminIdentity, token_id: str) -> None:
    revoke_audited(
        db,
        ApiToken,
        token_id,
        "API token",
        "api_token.revoke",
        admin.username,
        admin.source_ip,
        lambda row: {"name": row.name},
    )

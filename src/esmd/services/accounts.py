"""Admin accounts: login with throttling, bearer sessions, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.db.tables import ADMIN_SESSIONS, API_TOKENS, AUDIT_LOG, LOGIN_FAILURES, USERS
from esmd.errors import Forbidden, TooManyRequests, Unauthorized
from esmd.security import (
    burn_password_check,
    hash_password,
    new_token,
    password_needs_rehash,
    token_hash,
    verify_password,
)
from esmd.timeutil import utcnow
from trapsapi.enums import Role
from trapsapi.models import LoginResponse

API_TOKEN_PREFIX = "tapi_"
"""API tokens start with this, so one lookup finds them (sessions never have it: a session
token that happened to would still be found by the fallback lookup)."""
LAST_USED_RESOLUTION = timedelta(minutes=5)


@dataclass(frozen=True)
class AdminIdentity:
    user_id: int
    username: str
    role: Role
    session_id: int
    """The login session of the request (0 when an API token was used)."""
    api_token_id: str | None = None
    source_ip: str | None = None

    def require(self, role: Role) -> None:
        if role is Role.SUPERUSER and self.role is not Role.SUPERUSER:
            raise Forbidden(f"this needs the superuser role; {self.username!r} is a {self.role}")


def _source(username: str, source_ip: str | None) -> tuple[Any, ...]:
    """The conditions selecting the failures of one user name from one address."""
    source = (
        LOGIN_FAILURES.c.source_ip.is_(None)
        if source_ip is None
        else LOGIN_FAILURES.c.source_ip == source_ip
    )
    return (LOGIN_FAILURES.c.username == username, source)


def _failures(username: str, source_ip: str | None, since: datetime) -> tuple[Any, ...]:
    return (*_source(username, source_ip), LOGIN_FAILURES.c.at > since)


def _throttle(
    db: Database, settings: Settings, username: str, source_ip: str | None, now: datetime
) -> None:
    """429 once a user name has collected the maximum of failures from one source address
    within the window (database-backed, so every esmd process counts the same failures)."""
    window = timedelta(seconds=settings.login_window_s)
    limit = settings.login_max_failures
    with db.read() as connection:
        recent = (
            connection.execute(
                select(LOGIN_FAILURES.c.at)
                .where(*_failures(username, source_ip, now - window))
                .order_by(LOGIN_FAILURES.c.at.desc())
                .limit(limit)
            )
            .scalars()
            .all()
        )
    if len(recent) >= limit:
        retry = int((recent[-1] + window - now).total_seconds()) + 1
        raise TooManyRequests(
            f"too many failed logins for {username!r}; try again in {retry} s", retry
        )


def _record_failure(
    db: Database,
    settings: Settings,
    username: str,
    source_ip: str | None,
    now: datetime,
    unknown_user: bool,
) -> None:
    """Count one failure and audit it; the failure that reaches the limit also audits the
    lockout (``auth.lockout``) once, with how long it lasts."""
    window = timedelta(seconds=settings.login_window_s)
    with db.write() as connection:
        connection.execute(
            delete(LOGIN_FAILURES).where(
                LOGIN_FAILURES.c.username == username, LOGIN_FAILURES.c.at <= now - window
            )
        )
        connection.execute(
            LOGIN_FAILURES.insert().values(username=username, at=now, source_ip=source_ip)
        )
        failures = connection.execute(
            select(func.count()).where(*_failures(username, source_ip, now - window))
        ).scalar_one()
        records: list[tuple[str, dict[str, Any]]] = [
            ("auth.login_failed", {"reason": "unknown user" if unknown_user else "wrong password"})
        ]
        if failures == settings.login_max_failures:
            records.append(
                (
                    "auth.lockout",
                    {"failures": int(failures), "retry_after_s": settings.login_window_s},
                )
            )
        for action, detail in records:
            connection.execute(
                AUDIT_LOG.insert().values(
                    at=now,
                    actor=username,
                    action=action,
                    target=username,
                    source_ip=source_ip,
                    detail=detail,
                )
            )


def login(
    db: Database, settings: Settings, username: str, password: str, source_ip: str | None = None
) -> LoginResponse:
    """Audited: ``auth.login`` on success, ``auth.login_failed`` on a wrong name or password."""
    now = utcnow()
    _throttle(db, settings, username, source_ip, now)
    with db.read() as connection:
        user = connection.execute(
            select(USERS.c.id, USERS.c.password_hash, USERS.c.role).where(
                USERS.c.username == username
            )
        ).first()
    if user is None:
        burn_password_check(password)
    if user is None or not verify_password(user.password_hash, password):
        _record_failure(db, settings, username, source_ip, now, user is None)
        raise Unauthorized("invalid user name or password")
    token = new_token()
    expires_at = now + timedelta(seconds=settings.session_ttl_s)
    with db.write() as connection:
        connection.execute(delete(LOGIN_FAILURES).where(*_source(username, source_ip)))
        connection.execute(
            delete(ADMIN_SESSIONS).where(ADMIN_SESSIONS.c.expires_at < now - timedelta(days=1))
        )
        connection.execute(
            ADMIN_SESSIONS.insert().values(
                token_hash=token_hash(token),
                user_id=user.id,
                created_at=now,
                expires_at=expires_at,
                revoked=False,
            )
        )
        connection.execute(
            AUDIT_LOG.insert().values(
                at=now,
                actor=username,
                action="auth.login",
                target=username,
                source_ip=source_ip,
                detail={},
            )
        )
        if password_needs_rehash(user.password_hash):
            connection.execute(
                update(USERS)
                .where(USERS.c.id == user.id)
                .values(password_hash=hash_password(password))
            )
    return LoginResponse(token=token, expires_at=expires_at, username=username, role=user.role)


def authenticate_admin(db: Database, token: str, source_ip: str | None = None) -> AdminIdentity:
    """The user behind an admin bearer token (a login session or an API token), or 401."""
    if not token or "." in token or len(token) > 128:
        raise Unauthorized("not an admin token: log in first")
    if token.startswith(API_TOKEN_PREFIX):
        identity = _authenticate_api_token(db, token)
        if identity is not None:
            return replace(identity, source_ip=source_ip)
    with db.read() as connection:
        row = connection.execute(
            select(
                ADMIN_SESSIONS.c.id,
                ADMIN_SESSIONS.c.expires_at,
                ADMIN_SESSIONS.c.revoked,
                USERS.c.id.label("user_id"),
                USERS.c.username,
                USERS.c.role,
            )
            .join(USERS, USERS.c.id == ADMIN_SESSIONS.c.user_id)
            .where(ADMIN_SESSIONS.c.token_hash == token_hash(token))
        ).first()
    if row is None:
        raise Unauthorized("invalid admin token: log in again")
    if row.revoked:
        raise Unauthorized("this session was logged out: log in again")
    if row.expires_at <= utcnow():
        raise Unauthorized("this session has expired: log in again")
    return AdminIdentity(
        user_id=row.user_id,
        username=row.username,
        role=Role(row.role),
        session_id=row.id,
        source_ip=source_ip,
    )


def _authenticate_api_token(db: Database, token: str) -> AdminIdentity | None:
    now = utcnow()
    with db.read() as connection:
        row = connection.execute(
            select(
                API_TOKENS.c.id,
                API_TOKENS.c.expires_at,
                API_TOKENS.c.revoked,
                API_TOKENS.c.last_used_at,
                USERS.c.id.label("user_id"),
                USERS.c.username,
                USERS.c.role,
            )
            .join(USERS, USERS.c.id == API_TOKENS.c.user_id)
            .where(API_TOKENS.c.token_hash == token_hash(token))
        ).first()
    if row is None:
        return None
    if row.revoked:
        raise Unauthorized("this API token was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise Unauthorized("this API token has expired")
    if row.last_used_at is None or row.last_used_at < now - LAST_USED_RESOLUTION:
        with db.write() as connection:
            connection.execute(
                update(API_TOKENS).where(API_TOKENS.c.id == row.id).values(last_used_at=now)
            )
    return AdminIdentity(
        user_id=row.user_id,
        username=row.username,
        role=Role(row.role),
        session_id=0,
        api_token_id=row.id,
    )


def logout(db: Database, admin: AdminIdentity) -> None:
    """Revoke the credential of this request (its login session, or its API token)."""
    with db.write() as connection:
        if admin.api_token_id is not None:
            connection.execute(
                update(API_TOKENS).where(API_TOKENS.c.id == admin.api_token_id).values(revoked=True)
            )
        else:
            connection.execute(
                update(ADMIN_SESSIONS)
                .where(ADMIN_SESSIONS.c.id == admin.session_id)
                .values(revoked=True)
            )
        connection.execute(
            AUDIT_LOG.insert().values(
                at=utcnow(),
                actor=admin.username,
                action="auth.logout",
                target=admin.api_token_id or admin.username,
                source_ip=admin.source_ip,
                detail={},
            )
        )

"""Enrollment tokens and agent enrollment (token in, agent identity out)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlmodel import Session

from esmd.config import Settings
from esmd.db.engine import Database
from esmd.db.tables import AGENTS, AUDIT_LOG, ENROLLMENT_TOKENS, EnrollmentToken
from esmd.errors import Unauthorized
from esmd.security import new_token, token_hash
from esmd.services.audit import audit
from esmd.services.storable import check_storable
from esmd.timeutil import utcnow
from trapsapi.models import EnrollRequest, EnrollResponse, TokenCreate, TokenPublic


def token_public(row: EnrollmentToken, plain: str | None = None) -> TokenPublic:
    return TokenPublic(
        id=row.id,
        label=row.label,
        created_at=row.created_at,
        expires_at=row.expires_at,
        max_uses=row.max_uses,
        uses=row.uses,
        revoked=row.revoked,
        created_by=row.created_by,
        token=plain,
    )


def create_token(
    session: Session, actor: str, request: TokenCreate, source_ip: str | None = None
) -> TokenPublic:
    """A new token; the plain secret is in this reply only (the database keeps its hash)."""
    plain = new_token()
    now = utcnow()
    row = EnrollmentToken(
        id=secrets.token_hex(8),
        token_hash=token_hash(plain),
        label=request.label,
        created_at=now,
        expires_at=now + timedelta(seconds=request.expires_in_s),
        max_uses=request.max_uses,
        uses=0,
        revoked=False,
        created_by=actor,
    )
    session.add(row)
    audit(
        session,
        actor,
        "token.create",
        row.id,
        {"label": row.label, "max_uses": row.max_uses, "expires_at": row.expires_at.isoformat()},
        source_ip=source_ip,
    )
    return token_public(row, plain)


def enroll(
    db: Database,
    settings: Settings,
    request: EnrollRequest,
    servers: list[str],
    source_ip: str | None = None,
) -> EnrollResponse:
    """Consume one use of the token atomically and create the agent in the same transaction.

    The conditional UPDATE is the whole check: concurrent enrollments can never take more
    uses than ``max_uses``, nor use a token revoked or expired a moment before.
    """
    check_storable(request)
    hashed = token_hash(request.token)
    now = utcnow()
    agent_id = str(uuid.uuid4())
    secret = new_token()
    with db.write() as connection:
        consumed = connection.execute(
            update(ENROLLMENT_TOKENS)
            .where(
                ENROLLMENT_TOKENS.c.token_hash == hashed,
                ENROLLMENT_TOKENS.c.revoked.is_(False),
                ENROLLMENT_TOKENS.c.uses < ENROLLMENT_TOKENS.c.max_uses,
                ENROLLMENT_TOKENS.c.expires_at > now,
            )
            .values(uses=ENROLLMENT_TOKENS.c.uses + 1)
            .returning(ENROLLMENT_TOKENS.c.id)
        ).first()
        if consumed is None:
            token = connection.execute(
                select(
                    ENROLLMENT_TOKENS.c.revoked,
                    ENROLLMENT_TOKENS.c.expires_at,
                ).where(ENROLLMENT_TOKENS.c.token_hash == hashed)
            ).first()
            if token is None:
                raise Unauthorized("unknown enrollment token")
            if token.revoked:
                raise Unauthorized("this enrollment token was revoked")
            if token.expires_at <= now:
                raise Unauthorized("this enrollment token has expired")
            raise Unauthorized("this enrollment token has no uses left")
        connection.execute(
            AGENTS.insert().values(
                agent_id=agent_id,
                secret_hash=token_hash(secret),
                hostname=request.hostname,
                os=request.os,
                os_version=request.os_version,
                agent_version=request.agent_version,
                ips=[],
                enrolled_at=now,
                enrollment_token_id=consumed.id,
                modules=[],
                footprint=None,
                policy_version=None,
                outbox_depth=0,
                events_dropped=0,
                issues=[],
            )
        )
        connection.execute(
            AUDIT_LOG.insert().values(
                at=now,
                actor=f"enrollment-token:{consumed.id}",
                action="agent.enroll",
                target=agent_id,
                source_ip=source_ip,
                detail={"hostname": request.hostname, "os": request.os},
            )
        )
    return EnrollResponse(
        agent_id=agent_id,
        agent_secret=secret,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        servers=servers,
    )

"""Enrollment tokens: created and revoked by superusers and security admins, listed by any admin."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import func
from sqlmodel import col, select

from esmd.api.deps import DatabaseDep, EnrollmentWriter, Reader, SessionDep
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.db.tables import EnrollmentToken
from esmd.services.audit import revoke_audited
from esmd.services.enrollment import create_token, token_public
from esmd.services.storable import check_storable
from trapsapi import routes
from trapsapi.models import Page, TokenCreate, TokenPublic

router = APIRouter(tags=["enrollment-tokens"], responses=ADMIN_ERRORS)


@router.post(routes.ENROLLMENT_TOKENS, status_code=status.HTTP_201_CREATED)
def create(body: TokenCreate, db: DatabaseDep, admin: EnrollmentWriter) -> TokenPublic:
    """The reply is the only place the token itself ever appears."""
    check_storable(body)
    with db.write_session() as session:
        return create_token(session, admin.username, body, admin.source_ip)


@router.get(routes.ENROLLMENT_TOKENS)
def list_tokens(
    session: SessionDep, _admin: Reader, limit: Limit = 100, offset: Offset = 0
) -> Page[TokenPublic]:
    """Newest first; the token secrets are never shown again."""
    statement = select(EnrollmentToken)
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(col(EnrollmentToken.created_at).desc(), col(EnrollmentToken.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[TokenPublic](data=[token_public(r) for r in rows], count=count)


@router.delete(
    f"{routes.ENROLLMENT_TOKENS}/{{token_id}}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
)
def revoke(token_id: str, db: DatabaseDep, admin: EnrollmentWriter) -> None:
    """Revoke a token: enrollment with it fails from now on; enrolled agents stay."""
    revoke_audited(
        db,
        EnrollmentToken,
        token_id,
        "enrollment token",
        "token.revoke",
        admin.username,
        admin.source_ip,
        lambda row: {"label": row.label},
    )

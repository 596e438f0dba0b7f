"""API tokens for scripts: long-lived bearer tokens acting as a user, superusers only."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import func
from sqlmodel import col, select

from esmd.api.deps import ApiTokensAdmin, DatabaseDep, SessionDep
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.db.tables import ApiToken, User
from esmd.services import users
from esmd.services.storable import check_storable
from trapsapi import routes
from trapsapi.models import ApiTokenCreate, ApiTokenPublic, Page

router = APIRouter(tags=["api-tokens"], responses=ADMIN_ERRORS)


@router.post(routes.API_TOKENS, status_code=status.HTTP_201_CREATED)
def create_api_token(
    body: ApiTokenCreate, db: DatabaseDep, admin: ApiTokensAdmin
) -> ApiTokenPublic:
    """The reply is the only place the token itself ever appears (the server keeps its hash).
    The token acts with the role the user has at each request."""
    check_storable(body)
    return users.create_api_token(db, admin, body)


@router.get(routes.API_TOKENS)
def list_api_tokens(
    session: SessionDep,
    _admin: ApiTokensAdmin,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[ApiTokenPublic]:
    """Newest first; the secrets are never shown again."""
    statement = select(ApiToken, User.username).join(User, col(User.id) == col(ApiToken.user_id))
    count = session.exec(select(func.count()).select_from(ApiToken)).one()
    rows = session.exec(
        statement.order_by(col(ApiToken.created_at).desc(), col(ApiToken.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[ApiTokenPublic](
        data=[users.api_token_public(token, username) for token, username in rows], count=count
    )


@router.delete(
    f"{routes.API_TOKENS}/{{token_id}}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
)
def revoke_api_token(token_id: str, db: DatabaseDep, admin: ApiTokensAdmin) -> None:
    """The next request with the token is refused."""
    users.revoke_api_token(db, admin, token_id)

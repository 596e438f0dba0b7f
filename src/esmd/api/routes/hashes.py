"""Hash verdicts (admin overrides): what the malware module blocks or allows."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status
from sqlalchemy import func
from sqlmodel import col, select

from esmd.api.deps import DatabaseDep, HashWriter, Reader, SessionDep
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND, Limit, Offset
from esmd.db.tables import HashVerdict
from esmd.errors import BadRequest, NotFound
from esmd.services.audit import audit
from esmd.services.policy_history import record_version
from esmd.services.storable import check_storable
from esmd.timeutil import utcnow
from trapsapi import routes
from trapsapi.enums import Verdict
from trapsapi.models import SHA256_RE, Page, VerdictPublic, VerdictSet

router = APIRouter(tags=["hashes"], responses=ADMIN_ERRORS)
Sha256Path = Annotated[str, Path(description="SHA-256, 64 hexadecimal characters.")]


def checked_sha256(value: str) -> str:
    value = value.lower()
    if not SHA256_RE.match(value):
        raise BadRequest("sha256: must be 64 hexadecimal characters (a SHA-256)")
    return value


def _public(row: HashVerdict) -> VerdictPublic:
    return VerdictPublic.model_validate(row)


@router.get(routes.HASHES)
def list_hashes(
    session: SessionDep,
    _admin: Reader,
    verdict: Verdict | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[VerdictPublic]:
    """Newest change first."""
    statement = select(HashVerdict)
    if verdict is not None:
        statement = statement.where(col(HashVerdict.verdict) == verdict.value)
    count = session.exec(select(func.count()).select_from(statement.subquery())).one()
    rows = session.exec(
        statement.order_by(col(HashVerdict.updated_at).desc(), col(HashVerdict.sha256))
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[VerdictPublic](data=[_public(r) for r in rows], count=count)


@router.get(f"{routes.HASHES}/{{sha256}}", responses=NOT_FOUND)
def get_hash(sha256: Sha256Path, session: SessionDep, _admin: Reader) -> VerdictPublic:
    row = session.get(HashVerdict, checked_sha256(sha256))
    if row is None:
        raise NotFound(f"no verdict for {sha256.lower()}")
    return _public(row)


@router.put(f"{routes.HASHES}/{{sha256}}")
def set_verdict(
    sha256: Sha256Path, body: VerdictSet, db: DatabaseDep, admin: HashWriter
) -> VerdictPublic:
    """Set an admin verdict; a changed verdict bumps the policy version agents pull."""
    sha256 = checked_sha256(sha256)
    check_storable(body)
    with db.write_session() as session:
        row = session.get(HashVerdict, sha256)
        previous = row.verdict if row is not None else None
        if row is None:
            row = HashVerdict(sha256=sha256, verdict=body.verdict.value, updated_by=admin.username)
        row.verdict = body.verdict.value
        row.comment = body.comment
        row.source = "admin"
        row.updated_at = utcnow()
        row.updated_by = admin.username
        session.add(row)
        if previous != row.verdict:
            changes = {"sha256": sha256, "verdict": row.verdict, "previous": previous}
            record_version(session.connection(), admin.username, "hash.set", "", changes)
        audit(
            session,
            admin.username,
            "hash.set",
            sha256,
            {"verdict": row.verdict, "previous": previous, "comment": row.comment},
            source_ip=admin.source_ip,
        )
        session.flush()
        return _public(row)


@router.delete(
    f"{routes.HASHES}/{{sha256}}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND
)
def unset_verdict(sha256: Sha256Path, db: DatabaseDep, admin: HashWriter) -> None:
    """Remove the verdict (the hash is unknown again)."""
    sha256 = checked_sha256(sha256)
    with db.write_session() as session:
        row = session.get(HashVerdict, sha256)
        if row is None:
            raise NotFound(f"no verdict for {sha256}")
        session.delete(row)
        changes = {"sha256": sha256, "previous": row.verdict}
        record_version(session.connection(), admin.username, "hash.unset", "", changes)
        audit(
            session,
            admin.username,
            "hash.unset",
            sha256,
            {"previous": row.verdict},
            source_ip=admin.source_ip,
        )

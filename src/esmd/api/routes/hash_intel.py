"""Threat-intel feeds of hashes, and the full report of one hash (sources and sightings)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from esmd.api.deps import DatabaseDep, HashWriter, Reader
from esmd.api.params import ADMIN_ERRORS, NOT_FOUND
from esmd.api.routes.hashes import Sha256Path, checked_sha256
from esmd.errors import NotFound
from esmd.services import verdicts
from esmd.services.storable import check_storable
from trapsapi import routes
from trapsapi.models_hashes import HashFeed, HashImport, HashImportResult, HashReport

router = APIRouter(tags=["hashes"], responses=ADMIN_ERRORS)
FeedPath = Annotated[str, Path(description="Feed name (lower case, digits, . _ -).")]


@router.get(f"{routes.HASHES}/{{sha256}}/report")
def hash_report(sha256: Sha256Path, db: DatabaseDep, _admin: Reader) -> HashReport:
    """The effective verdict, every source's verdict, and which agents saw it where."""
    with db.read() as connection:
        return verdicts.report(connection, checked_sha256(sha256))


@router.get(routes.HASH_FEEDS)
def list_feeds(db: DatabaseDep, _admin: Reader) -> list[HashFeed]:
    with db.read() as connection:
        return verdicts.feeds(connection)


@router.post(routes.HASH_FEED_IMPORT)
def import_feed(body: HashImport, db: DatabaseDep, admin: HashWriter) -> HashImportResult:
    """Upsert up to 20,000 hashes of a feed in one transaction (send big lists in chunks)."""
    check_storable(body)
    return verdicts.import_feed(db, body, admin.username, admin.source_ip)


@router.delete(
    f"{routes.HASH_FEEDS}/{{feed}}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND
)
def delete_feed(feed: FeedPath, db: DatabaseDep, admin: HashWriter) -> None:
    if not verdicts.delete_feed(db, feed, admin.username, admin.source_ip):
        raise NotFound(f"no feed {feed!r}")

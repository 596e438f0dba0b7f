"""Threat intelligence for hashes: feeds imported in bulk, the verdict of every source of a
hash, the effective verdict (admin override > feed > agent analysis) and where it was seen."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from trapsapi.enums import Verdict
from trapsapi.models import Public, Request, Sha256

FeedName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
MAX_IMPORT_ENTRIES = 20_000


class HashImportEntry(Request):
    sha256: Sha256
    verdict: Verdict | None = Field(default=None, description="None: the import's verdict.")
    comment: Annotated[str, Field(max_length=1024)] = ""


class HashImport(Request):
    """One chunk of a feed; ``replace`` on the last chunk drops the feed's other entries."""

    feed: FeedName
    verdict: Verdict = Verdict.MALWARE
    entries: Annotated[list[HashImportEntry], Field(max_length=MAX_IMPORT_ENTRIES)]
    replace: bool = Field(
        default=False,
        description="Remove the feed's entries that are not in this import (and were "
        "imported before ``since``, so earlier chunks of the same import stay).",
    )
    since: datetime | None = Field(
        default=None, description="Start of a chunked import (the first chunk's server_time)."
    )


class HashImportResult(Public):
    feed: str
    received: int
    inserted: int
    updated: int
    unchanged: int
    removed: int
    server_time: datetime


class HashFeed(Public):
    feed: str
    entries: int
    by_verdict: dict[str, int]
    updated_at: datetime | None


class HashSource(Public):
    source: str = Field(description="admin, feed:<name> or agent")
    verdict: Verdict
    comment: str
    updated_at: datetime


class HashSighting(Public):
    agent_id: str
    hostname: str
    process_path: str
    events: int
    first_seen: datetime
    last_seen: datetime


class HashReport(Public):
    sha256: str
    verdict: Verdict = Field(description="The effective verdict (unknown when no source).")
    source: str | None = Field(description="The source whose verdict wins.")
    sources: list[HashSource]
    sightings: list[HashSighting]


MAX_VERDICT_QUERY = 1000


class AgentAnalysis(Request):
    """An agent's own static analysis of a file it saw (lowest precedence, never enforced
    fleet-wide)."""

    sha256: Sha256
    verdict: Verdict
    reasons: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=16)] = []


class AgentVerdictQuery(Request):
    sha256s: Annotated[list[Sha256], Field(max_length=MAX_VERDICT_QUERY)] = []
    reports: Annotated[list[AgentAnalysis], Field(max_length=MAX_VERDICT_QUERY)] = []


class AgentVerdicts(Public):
    verdicts: dict[str, Verdict] = Field(
        description="Every queried hash: its verdict from admins and feeds, or unknown."
    )
    ttl_s: int = Field(description="How long the agent may cache these answers.")

"""Retention and quotas: batched deletes by age and by row count, blobs with their rows, the
background loop of ``esmd serve`` and ``esmd retention run``, on both databases."""

from __future__ import annotations

import re
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body, new_event
from ops_harness import OpsServer
from sqlalchemy import Column, Integer, MetaData, String, Table, select, update

from esmd.cli import main
from esmd.db.engine import Database
from esmd.db.tables import AUDIT_LOG, EVENTS
from esmd.db.types import UTCDateTime
from esmd.ops import retention
from esmd.timeutil import utcnow


def _events(esm: Esm, count: int) -> list[str]:
    agent = esm.enroll()
    ids = []
    for _ in range(count // 10):
        batch = [new_event() for _ in range(10)]
        agent.upload_events(batch)
        ids += [e["id"] for e in batch]
    return ids


def _age(esm: Esm, ids: list[str], days: float) -> None:
    """Make the events look received ``days`` ago (staggered by a second each, in order)."""
    import uuid

    with esm.engine.begin() as connection:
        for index, event_id in enumerate(ids):
            connection.execute(
                update(EVENTS)
                .where(EVENTS.c.id == uuid.UUID(event_id))
                .values(received_at=utcnow() - timedelta(days=days, seconds=len(ids) - index))
            )


def _remaining(esm: Esm) -> set[str]:
    with esm.engine.connect() as connection:
        return {str(i) for i in connection.execute(select(EVENTS.c.id)).scalars()}


def test_age_then_quota_in_batches_with_one_audit_record(esm: Esm) -> None:
    ids = _events(esm, 40)
    _age(esm, ids[:25], days=40)  # the 25 oldest are beyond 30 days
    _age(esm, ids[25:], days=2)
    settings = esm.settings.model_copy(
        update={
            "retention_events_days": 30,
            "retention_events_max_rows": 10,
            "retention_batch_size": 7,
        }
    )
    db = Database.from_url(settings.url, pool_size=2)
    try:
        summary = retention.run(db, settings)
        again = retention.run(db, settings)
    finally:
        db.dispose()
    events = next(t for t in summary.targets if t.name == "events")
    assert (events.by_age, events.by_quota, events.batches) == (25, 5, 4 + 1)
    assert summary.lines() == ["events: 30 deleted (25 by age, 5 by quota) in 5 batches"]
    assert _remaining(esm) == set(ids[30:])  # the newest ten stay
    assert again.deleted == 0
    with esm.engine.connect() as connection:
        audits = connection.execute(
            select(AUDIT_LOG.c.actor, AUDIT_LOG.c.detail).where(
                AUDIT_LOG.c.action == "retention.delete"
            )
        ).all()
    assert [(a.actor, a.detail) for a in audits] == [
        ("esmd", {"events": {"by_age": 25, "by_quota": 5, "files": 0}})
    ]


def test_a_blob_table_plugs_in_and_its_files_go_with_the_rows(esm: Esm, tmp_path: Path) -> None:
    metadata = MetaData()
    uploads = Table(
        f"test_uploads_{int(time.time() * 1000) % 100000}",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("uploaded_at", UTCDateTime(), nullable=False, index=True),
        Column("path", String(255), nullable=False),
    )
    metadata.create_all(esm.engine)
    root = tmp_path / "uploads"
    root.mkdir()
    try:
        with esm.engine.begin() as connection:
            for index in range(6):
                (root / f"bundle-{index}.tar").write_bytes(b"x" * 100)
                connection.execute(
                    uploads.insert().values(
                        id=index + 1,
                        uploaded_at=utcnow() - timedelta(days=9.5 - index),
                        path=f"bundle-{index}.tar",
                    )
                )
        target = retention.RetentionTarget(
            name="uploads",
            table=uploads,
            time_column=uploads.c.uploaded_at,
            key_column=uploads.c.id,
            max_age_days=7,  # bundles 0-2 are 7.5-9.5 days old
            max_rows=2,
            file_column=uploads.c.path,
            file_root=root,
        )
        db = Database.from_url(esm.settings.url, pool_size=2)
        try:
            summary = retention.apply(db, target, batch_size=2)
        finally:
            db.dispose()
        assert (summary.by_age, summary.by_quota, summary.files) == (3, 1, 4)
        assert sorted(p.name for p in root.iterdir()) == ["bundle-4.tar", "bundle-5.tar"]
        with esm.engine.connect() as connection:
            assert connection.execute(select(uploads.c.id)).scalars().all() == [5, 6]
    finally:
        metadata.drop_all(esm.engine)


def test_serve_runs_retention_in_the_background(esm_settings: Any) -> None:
    settings = esm_settings.model_copy(
        update={"retention_events_days": 1, "retention_interval_s": 1}
    )
    with OpsServer(settings) as esm:
        agent = esm.enroll()
        agent.checkin(checkin_body())
        old = [new_event() for _ in range(5)]
        fresh = [new_event() for _ in range(3)]
        agent.upload_events(old + fresh)
        _age(esm, [e["id"] for e in old], days=3)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_remaining(esm)) != 3:
            time.sleep(0.1)
        assert _remaining(esm) == {e["id"] for e in fresh}
        deleted = re.compile(r'esmd_retention_deleted_total\{table="events"\} 5')
        deadline = time.monotonic() + 15
        while True:  # the counters move when the whole pass is over (events come first)
            with urllib.request.urlopen(f"{esm.url}/metrics", timeout=10) as reply:
                metrics = reply.read().decode()
            if deleted.search(metrics) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert deleted.search(metrics)
        assert re.search(r"esmd_retention_runs_total [1-9]", metrics)


def test_retention_run_command(
    esm: Esm, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ids = _events(esm, 20)
    _age(esm, ids[:12], days=9)
    url = esm.settings.url
    assert main(["retention", "run", "--database-url", url, "--events-days", "8"]) == 0
    assert capsys.readouterr().out == "events: 12 deleted (12 by age, 0 by quota) in 1 batches\n"
    assert _remaining(esm) == set(ids[12:])
    assert main(["retention", "run", "--database-url", url, "--events-max-rows", "5"]) == 0
    assert capsys.readouterr().out.startswith("events: 3 deleted (0 by age, 3 by quota)")
    assert _remaining(esm) == set(ids[15:])
    before = _remaining(esm)
    assert main(["retention", "run", "--database-url", url, "--events-days", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("esmd: error: setting retention_events_days:") and "\n" not in err
    assert _remaining(esm) == before
    with pytest.raises(SystemExit) as exit_info:
        main(["retention", "run", "--events-days", "x"])
    assert exit_info.value.code == 2
    assert "invalid int value" in capsys.readouterr().err

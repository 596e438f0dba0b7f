"""The dashboard's Forensics screen (``f``): the bundles listed with details, ``d`` downloads the
selected one into the current directory, errors shown; SVG snapshots at 80x24 and 160x48."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.widgets import DataTable, Static
from tui_fixtures import FakeClient, at, fixture_app, settle

from trapsapi.errors import ApiError, AuthError
from trapsctl.tui.views.forensics import ForensicsScreen

pytestmark = pytest.mark.anyio
CONTENT = {"1" * 32: b"\x1f\x8b gzip bytes one", "2" * 32: b"\x1f\x8b gzip bytes two"}


def bundle(n: int, hostname: str, minutes_ago: float, size: int) -> dict[str, Any]:
    event_id = f"e0000000-0000-4000-8000-{n:012d}"
    return {
        "id": str(n) * 32,
        "agent_id": f"a1b2c3d4-0000-4000-8000-{n:012d}",
        "hostname": hostname,
        "bundle_id": event_id,
        "event_id": event_id,
        "action_id": "0f" * 16,
        "size": size,
        "sha256": hashlib.sha256(CONTENT[str(n) * 32]).hexdigest(),
        "created_at": at(minutes_ago + 5),
        "received_at": at(minutes_ago),
    }


BUNDLES = [bundle(1, "web-01", 3, 48_213), bundle(2, "db-01", 90, 2_400_000)]


class ForensicsFake(FakeClient):
    def __init__(self) -> None:
        super().__init__()
        self.download_error: Exception | None = None

    def list_forensics(self, **filters: Any) -> Any:
        return self._answer("list_forensics", BUNDLES, filters)

    def download_forensics(self, bundle_id: str, write: Callable[[bytes], object]) -> Any:
        self.calls.append(("download_forensics", {"bundle_id": bundle_id}))
        write(CONTENT[bundle_id][:4])
        if self.download_error is not None:
            raise self.download_error
        write(CONTENT[bundle_id][4:])
        return {"size": len(CONTENT[bundle_id])}


def text_of(widget: Static) -> str:
    content = widget.content
    return content.plain if isinstance(content, Text) else str(content)


async def test_list_details_and_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    client = ForensicsFake()
    app = fixture_app(client)  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ForensicsScreen)
        table = screen.query_one(DataTable)
        assert [str(row.key.value) for row in table.ordered_rows] == ["1" * 32, "2" * 32]
        detail = text_of(screen.query_one(".detail", Static))
        assert "web-01" in detail and "47.1 KiB" in detail and BUNDLES[0]["event_id"] in detail
        assert text_of(screen.status) == "Forensic bundles: 2 shown · 2 on the ESM"

        await pilot.press("down", "d")
        await settle(pilot)
        saved = tmp_path / f"{BUNDLES[1]['bundle_id']}.json.gz"
        assert saved.read_bytes() == CONTENT["2" * 32]
        assert text_of(screen.status) == f"Saved {saved}"
        await pilot.press("d")
        await settle(pilot)
        assert (tmp_path / f"{BUNDLES[1]['bundle_id']}-1.json.gz").exists()

        client.download_error = ApiError("no forensic bundle '2…'")
        await pilot.press("d")
        await settle(pilot)
        assert text_of(screen.status).startswith("Not downloaded: no forensic bundle")
        assert len(list(tmp_path.iterdir())) == 2  # nothing partial left behind

        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, ForensicsScreen)


async def test_a_viewer_is_told_why_nothing_is_listed() -> None:
    client = ForensicsFake()
    app = fixture_app(client)  # type: ignore[arg-type]
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        client.fail = AuthError("the role viewer may not do this", 403)
        await pilot.press("f")
        await settle(pilot)
        assert text_of(app.screen.query_one("#forensics-status", Static)) == (
            "ESM error: the role viewer may not do this (r retries)"
        )


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot(snap_compare: Callable[..., bool], size: tuple[int, int]) -> None:
    async def run_before(pilot: Any) -> None:
        await settle(pilot)
        await pilot.press("f")
        await settle(pilot)

    app = fixture_app(ForensicsFake())  # type: ignore[arg-type]
    assert snap_compare(app, terminal_size=size, run_before=run_before)

"""Which local bundles a retrieve_forensics action selects (a real directory of bundles)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from trapsd.forensics import SUFFIX, select_bundles


def test_select_by_id_recent_and_since(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    for index in range(15):
        path = tmp_path / f"{index:08x}-0000{SUFFIX}"
        path.write_bytes(b"x" * (index + 1))
        os.utime(path, (now - 1000 + index, now - 1000 + index))
    names = [f"{i:08x}-0000" for i in range(15)]

    chosen, missing = select_bundles(tmp_path, [names[3], "ffffffff-0000", names[3]], None, None)
    assert [c[0] for c in chosen] == [names[3]] and missing == ["ffffffff-0000"]
    chosen, _ = select_bundles(tmp_path, [], None, None)  # the 10 newest by default
    assert [c[0] for c in chosen] == names[::-1][:10]
    chosen, _ = select_bundles(tmp_path, [], 3, None)
    assert [c[0] for c in chosen] == names[::-1][:3]
    since = dt.datetime.fromtimestamp(now - 1000 + 12, dt.UTC)
    chosen, _ = select_bundles(tmp_path, [], 10, since)
    assert [c[0] for c in chosen] == [names[14], names[13], names[12]]
    assert select_bundles(tmp_path / "none", [], None, None) == ([], [])

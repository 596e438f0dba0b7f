"""The agent's recent log lines (a ring buffer) and the log bundle: what the server's
``retrieve_logs`` action uploads and what ``trapsd logs collect`` writes locally."""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

RING_LINES = 2000


class LogRing(logging.Handler):
    """Keeps the last ``RING_LINES`` formatted records; appending never blocks."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=RING_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:
            self.handleError(record)

    def clear(self) -> int:
        count = len(self.lines)
        self.lines.clear()
        return count


def bundle(sections: dict[str, Any], lines: list[str], max_bytes: int) -> tuple[bytes, int]:
    """A gzip of the JSON of ``sections`` and the newest ``lines`` that fit in ``max_bytes``."""
    import gzip  # only when asked: the daemon does not pay for it otherwise

    kept = list(lines)
    while True:
        document = {
            "collected_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **sections,
            "log": kept,
        }
        data = gzip.compress(json.dumps(document, indent=1, default=str).encode(), 6)
        if len(data) <= max_bytes or not kept:
            return data, len(kept)
        kept = kept[len(kept) // 2 :] if len(kept) > 1 else []


def log_sections(
    status: dict[str, Any], settings: Any, actions: list[dict[str, Any]], state_dir: Path
) -> dict[str, Any]:
    """Everything a bundle holds besides the log lines (settings as text: paths, None…)."""
    import dataclasses

    from trapsd.actions import quarantine
    from trapsd.actions.executors import ISOLATION_FILE
    from trapsd.files import read_json

    return {
        "status": status,
        "settings": {k: str(v) for k, v in dataclasses.asdict(settings).items()},
        "actions": actions,
        "quarantine": quarantine.list_entries(state_dir),
        "isolation": read_json(state_dir / ISOLATION_FILE),
    }

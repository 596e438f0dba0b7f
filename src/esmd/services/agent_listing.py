"""The agents listing on its fast path: Core rows straight to the JSON of ``Page[AgentPublic]``.

``GET /agents`` with 1,000 rows spent most of its time building and re-validating pydantic
models (ORM objects -> AgentPublic -> FastAPI's response validation -> JSON). Here each row
becomes the same JSON directly (:func:`esmd.services.agents.agent_fields`, which
``agent_public`` validates too); tests/esmd/test_esmd_agent_listing.py keeps the two equal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from esmd.config import Settings
from esmd.services.agents import agent_fields


def page_json(
    rows: Sequence[Mapping[Any, Any]],
    count: tuple[int, bool],
    next_cursor: str | None,
    settings: Settings,
    now: datetime,
) -> bytes:
    """``count`` is (count, capped) as :func:`esmd.services.paging.capped` returns it."""
    data = [agent_fields(row, settings, now) for row in rows]
    body = {"data": data, "count": count[0], "count_capped": count[1], "next_cursor": next_cursor}
    return json.dumps(body, separators=(",", ":")).encode()

"""The Events tab's filter: ``key:value`` words go to the ESM, the rest filters locally.

``sev:high host:web status:new`` asks the server for those events only (so the filter covers
all 100k, not the pages held); free words (``xmrig``) then filter the rows received. Values
the server would refuse (``sev:loud``) stay free words, which match nothing: the analyst sees
an empty list rather than an error.
"""

from __future__ import annotations

import re

from trapsapi.enums import Severity, TriageStatus

KEYS = {
    "sev": "severity",
    "severity": "severity",
    "host": "hostname",
    "hostname": "hostname",
    "module": "module",
    "status": "status",
    "sha": "sha256",
    "sha256": "sha256",
    "since": "since",
    "agent": "agent_id",
}
SEVERITIES = {s.value for s in Severity} | {"info"}
STATUSES = {s.value for s in TriageStatus}
SINCE = re.compile(r"^\d{1,6}[smhd]$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _valid(param: str, value: str) -> str | None:
    """The value as the server takes it, or None when it would be refused."""
    if param == "severity":
        value = "informational" if value == "info" else value
        return value if value in SEVERITIES else None
    if param == "status":
        value = value.replace(" ", "_")
        return value if value in STATUSES else None
    if param == "sha256":
        return value if SHA256.match(value) else None
    if param == "since":
        return value if SINCE.match(value) else None
    return value[:255] if value else None


def split_filter(text: str) -> tuple[dict[str, str], str]:
    """The server's parameters and the free words of a filter (lower case)."""
    params: dict[str, str] = {}
    free: list[str] = []
    for word in text.lower().split():
        key, sep, value = word.partition(":")
        param = KEYS.get(key) if sep else None
        valid = _valid(param, value) if param else None
        if param and valid is not None:
            params[param] = valid
        else:
            free.append(word)
    return params, " ".join(free)

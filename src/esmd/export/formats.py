"""Security events as SIEM records: CEF (with a syslog header) and JSON lines.

CEF (ArcSight "Common Event Format", revision 25): ``CEF:0|Vendor|Product|Version|
SignatureID|Name|Severity|Extension``. Header fields escape ``\\`` and ``|``; extension
values escape ``\\`` and ``=`` and encode newlines as ``\\n`` / ``\\r``. Extension keys are
the standard ArcSight dictionary names SIEM parsers map without configuration.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from esmd import __version__

VENDOR = "Traps"
PRODUCT = "ESM"
CEF_SEVERITY = {"informational": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
"""Our five severities on CEF's 0-10 scale (0-3 low, 4-6 medium, 7-8 high, 9-10 very high)."""
CEF_ACT = {"prevented": "blocked", "killed": "killed", "notified": "notified"}
SYSLOG_SEVERITY = {"informational": 6, "low": 5, "medium": 4, "high": 3, "critical": 2}
"""Syslog severities (6 info, 5 notice, 4 warning, 3 err, 2 crit) for the PRI field."""
SyslogHeader = Literal["rfc5424", "rfc3164", "none"]
_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
_NON_PRINTABLE = re.compile(r"[^\x21-\x7e]")


@dataclass(frozen=True)
class ExportRow:
    """One stored event plus the agent's addresses: everything a record is made of."""

    seq: int
    id: str
    agent_id: str
    hostname: str
    time: datetime
    received_at: datetime
    module: str
    severity: str
    action: str
    process_path: str
    sha256: str | None
    pid: int | None
    ppid: int | None
    parent_path: str | None
    user: str | None
    uid: int | None
    cmdline: str
    details: Mapping[str, Any]
    agent_ip: str | None


def escape_header(value: str) -> str:
    """A CEF header field: backslash and pipe escaped, line breaks flattened to spaces."""
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def escape_extension(value: str) -> str:
    """A CEF extension value: backslash, equals sign and line breaks escaped."""
    value = value.replace("\\", "\\\\").replace("=", "\\=")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def _millis(moment: datetime) -> int:
    return int(moment.astimezone(UTC).timestamp() * 1000)


def cef(row: ExportRow) -> str:
    """The CEF record of ``row`` (without a syslog header)."""
    name = f"{row.module} {row.action}: {row.process_path.rsplit('/', 1)[-1] or row.process_path}"
    header = [
        "CEF:0",
        VENDOR,
        PRODUCT,
        __version__,
        row.module,
        name,
        str(CEF_SEVERITY.get(row.severity, 5)),
    ]
    extension: list[tuple[str, Any]] = [
        ("rt", _millis(row.time)),
        ("dvchost", row.hostname),
        ("dvc", row.agent_ip),
        ("src", row.agent_ip),
        ("deviceExternalId", row.agent_id),
        ("suser", row.user),
        ("suid", row.uid),
        ("sproc", row.process_path),
        ("spid", row.pid),
        ("fileHash", row.sha256),
        ("act", CEF_ACT.get(row.action, row.action)),
        ("cat", row.severity),
        ("cs1Label", "eventId"),
        ("cs1", row.id),
        ("cs2Label", "parentPath"),
        ("cs2", row.parent_path),
        ("cs3Label", "cmdline"),
        ("cs3", row.cmdline or None),
        ("cn1Label", "parentPid"),
        ("cn1", row.ppid),
    ]
    pairs = " ".join(
        f"{key}={escape_extension(str(value))}" for key, value in extension if value is not None
    )
    return "|".join(escape_header(part) for part in header) + "|" + pairs


def as_json(row: ExportRow) -> str:
    """One JSON object on one line (``ensure_ascii`` keeps it free of raw line breaks)."""
    record = {
        "vendor": VENDOR,
        "product": PRODUCT,
        "version": __version__,
        "seq": row.seq,
        "event_id": row.id,
        "agent_id": row.agent_id,
        "hostname": row.hostname,
        "agent_ip": row.agent_ip,
        "time": row.time.astimezone(UTC).isoformat(),
        "received_at": row.received_at.astimezone(UTC).isoformat(),
        "module": row.module,
        "severity": row.severity,
        "cef_severity": CEF_SEVERITY.get(row.severity, 5),
        "action": row.action,
        "process_path": row.process_path,
        "sha256": row.sha256,
        "pid": row.pid,
        "ppid": row.ppid,
        "parent_path": row.parent_path,
        "user": row.user,
        "uid": row.uid,
        "cmdline": row.cmdline,
        "details": dict(row.details),
    }
    return json.dumps(record, separators=(",", ":"), sort_keys=True, default=str)


def _sd_name(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, or ``-`` when empty."""
    cleaned = _NON_PRINTABLE.sub("_", value)[:limit]
    return cleaned or "-"


def syslog(
    message: str,
    row: ExportRow,
    header: SyslogHeader,
    *,
    facility: int,
    app_name: str = "esmd",
    sender: str = "-",
) -> str:
    """``message`` behind an RFC 5424 or RFC 3164 header (or none)."""
    if header == "none":
        return message
    pri = facility * 8 + SYSLOG_SEVERITY.get(row.severity, 5)
    moment = row.time.astimezone(UTC)
    if header == "rfc5424":
        stamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return (
            f"<{pri}>1 {stamp} {_sd_name(sender, 255)} {_sd_name(app_name, 48)} - "
            f"{_sd_name(row.module, 32)} - {message}"
        )
    stamp = f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S}"
    return f"<{pri}>{stamp} {_sd_name(sender, 255)} {_sd_name(app_name, 32)}: {message}"


def frame(record: bytes, framing: Literal["octet", "lf", "none"]) -> bytes:
    """RFC 5425/6587 octet counting (``LEN SP MSG``), a trailing LF, or the datagram as is."""
    if framing == "octet":
        return str(len(record)).encode() + b" " + record
    if framing == "lf":
        return record + b"\n"
    return record

"""The settings of one export sink (``export_sinks`` in the settings file or ESMD_EXPORT_SINKS)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from esmd.export.formats import SyslogHeader
from trapsapi.enums import Severity

Transport = Literal["udp", "tcp", "tls", "file"]
Framing = Literal["octet", "lf"]


class ExportSink(BaseModel):
    """Where and how to send security events; ``name`` keys the sink's persisted cursor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    format: Literal["cef", "json"] = "cef"
    transport: Transport = "udp"
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    path: Path | None = None
    """The JSON-lines (or CEF) file of a ``file`` sink; rotated at ``max_bytes``."""
    ca_file: Path | None = None
    """TLS: the CA bundle that verifies the receiver (default: the system's CAs)."""
    server_name: str | None = None
    """TLS: the name the receiver's certificate must carry (default: ``host``)."""
    syslog_header: SyslogHeader = "rfc5424"
    framing: Framing | None = None
    """TCP/TLS framing; default octet counting (RFC 5425) for CEF, LF for JSON."""
    facility: int = Field(default=13, ge=0, le=23)
    """Syslog facility of the PRI field (13: log audit)."""
    min_severity: Severity = Severity.INFORMATIONAL
    modules: list[str] = []
    """Only these modules (empty: all)."""
    max_bytes: int = Field(default=100 * 1024 * 1024, ge=4096)
    backups: int = Field(default=5, ge=0, le=1000)
    timeout_s: float = Field(default=5.0, gt=0, le=300)
    start: Literal["beginning", "now"] = "beginning"
    """Where a new sink (no cursor yet) starts: every stored event, or only events from now."""

    @model_validator(mode="after")
    def _complete(self) -> ExportSink:
        if self.transport == "file":
            if self.path is None:
                raise ValueError(f"export sink {self.name!r}: a file sink needs path")
        elif self.host is None or self.port is None:
            raise ValueError(
                f"export sink {self.name!r}: transport {self.transport} needs host and port"
            )
        if self.ca_file is not None and self.transport != "tls":
            raise ValueError(f"export sink {self.name!r}: ca_file is only for transport tls")
        return self

    @property
    def effective_framing(self) -> Literal["octet", "lf", "none"]:
        if self.transport == "udp":
            return "none"
        if self.transport == "file":
            return "lf"
        return self.framing or ("octet" if self.format == "cef" else "lf")

    @property
    def effective_header(self) -> SyslogHeader:
        """JSON lines carry no syslog header; CEF has one unless configured away."""
        return "none" if self.format == "json" else self.syslog_header

    def describe(self) -> str:
        where = str(self.path) if self.transport == "file" else f"{self.host}:{self.port}"
        return f"{self.name} ({self.format} over {self.transport} to {where})"

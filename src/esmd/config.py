"""esmd settings: init arguments > ``ESMD_*`` environment > TOML file (``ESMD_CONFIG``)."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from esmd.export.config import ExportSink
from trapsapi import DEFAULT_PORT
from trapsapi.errors import ConfigError

CONFIG_ENV = "ESMD_CONFIG"


def default_data_dir() -> Path:
    """``/var/lib/esmd`` for root, else ``$XDG_DATA_HOME/esmd`` (``~/.local/share/esmd``)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/esmd")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "esmd"


class Settings(BaseSettings):
    """Everything a communication server needs; one instance per process, passed explicitly."""

    model_config = SettingsConfigDict(env_prefix="ESMD_", extra="forbid", validate_default=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    """Where the embedded SQLite database (and later forensic uploads) live."""
    database_url: str | None = None
    """SQLAlchemy URL; None means ``sqlite:///{data_dir}/esm.db``."""
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    public_urls: Annotated[list[str], NoDecode] = []
    """The server list handed to agents (comma-separated in the environment). When not
    configured it is derived from host and port, and agents are told the URL they used
    to reach this server (see ``servers_for``)."""
    heartbeat_interval_s: int = Field(default=3600, ge=1)
    heartbeat_grace_s: int = Field(default=600, ge=0)
    session_ttl_s: int = Field(default=12 * 3600, ge=60)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    db_pool_size: int = Field(default=10, ge=1, le=1000)
    """Database connections kept open per process (PostgreSQL; SQLite ones are cheap)."""
    db_max_overflow: int = Field(default=30, ge=0, le=1000)
    """Extra connections under load; pool + overflow should cover the 40 worker threads."""
    login_max_failures: int = Field(default=10, ge=1)
    login_window_s: int = Field(default=15 * 60, ge=1)
    # --- operations: SIEM export and retention (docs/operations.md) ---
    export_sinks: list[ExportSink] = []
    """SIEM sinks (``[[export_sinks]]`` tables in the file, a JSON list in ESMD_EXPORT_SINKS)."""
    export_batch_size: int = Field(default=500, ge=1, le=10_000)
    export_poll_s: float = Field(default=1.0, gt=0, le=3600)
    export_settle_s: float = Field(default=2.0, ge=0, le=3600)
    """Only events received this long ago are exported, so that an ingest transaction still
    in flight (a lower ``seq`` committing after a higher one) is never skipped."""
    export_retry_max_s: float = Field(default=60.0, gt=0, le=3600)
    retention_events_days: int = Field(default=0, ge=0)
    """Delete events received more than this many days ago (0: keep them by age)."""
    retention_events_max_rows: int = Field(default=0, ge=0)
    """Keep at most this many events, deleting the oldest (0: no quota)."""
    retention_forensics_days: int = Field(default=90, ge=0)
    """Delete forensic bundles received more than this many days ago (0: keep them by age)."""
    retention_forensics_max_bundles: int = Field(default=0, ge=0)
    """Keep at most this many forensic bundles, deleting the oldest (0: no count quota)."""
    retention_forensics_max_bytes: int = Field(default=1024**3, ge=0)
    """Keep at most this many bytes of forensic bundles, deleting the oldest (0: no quota)."""
    retention_interval_s: int = Field(default=3600, ge=1)
    retention_batch_size: int = Field(default=5000, ge=1, le=20_000)
    """Rows per delete transaction (bound parameters: SQLite allows 32,766 a statement)."""
    max_in_flight: int = Field(default=512, ge=1, le=100_000)
    """Concurrent requests per process beyond which the server answers 429 (long-polls and
    health routes excepted)."""
    retry_after_s: int = Field(default=5, ge=1, le=3600)
    """Retry-After of a 429: this to twice this many seconds (jitter)."""
    wait_timeout_s: int = Field(default=55, ge=1, le=60)
    """Longest an agent's long-poll (``/agent/wait``) is held before a 204."""
    max_waiters: int = Field(default=100_000, ge=1)
    """Long-polls held at once per process; beyond it a wait answers 429."""
    wake_rate: float = Field(default=20_000.0, gt=0)
    """Long-polls per second this process ends with news (a token bucket: a broadcast is
    paced, never a herd); each costs a reply and the agent's next poll (docs/scaling.md)."""
    wake_report_rate: float = Field(default=100.0, gt=0)
    """Agents that got a new policy in their long-poll confirm it by a check-in spread over
    ``waiting / wake_report_rate`` seconds."""
    liveness_flush_s: float = Field(default=1.0, ge=0, le=60)
    """A check-in that repeats the agent's last one (telemetry aside) is answered from memory
    and its ``last_checkin_at`` written this many seconds later at most, with others in one
    transaction (0: every check-in is committed before its reply). docs/scaling.md."""
    listen_backlog: int = Field(default=1024, ge=1, le=65_535)
    """Connections the kernel queues before esmd accepts them (``listen`` backlog; the kernel
    caps it at ``net.core.somaxconn``). Sized so that a process briefly behind does not drop
    SYNs (a 1 s retransmit each) while a full queue still drains in under a second."""
    server_heartbeat_s: float = Field(default=10.0, gt=0, le=3600)
    """How often this process refreshes its row in ``servers`` (the registry)."""

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("public_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        # psycopg 3 is the PostgreSQL driver we ship; accept the plain scheme too.
        for plain in ("postgresql://", "postgres://"):
            if value.startswith(plain):
                return "postgresql+psycopg://" + value[len(plain) :]
        return value

    _public_urls_configured: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _derive_public_urls(self) -> Settings:
        self._public_urls_configured = bool(self.public_urls)
        if not self.public_urls:
            host = self.host
            if host in ("0.0.0.0", "::", ""):
                host = socket.getfqdn()
            elif ":" in host:
                host = f"[{host}]"
            self.public_urls = [f"http://{host}:{self.port}"]
        self.public_urls = [url.rstrip("/") for url in self.public_urls]
        return self

    @property
    def public_urls_configured(self) -> bool:
        return self._public_urls_configured

    def servers_for(self, request_base_url: str) -> list[str]:
        """The server list for an agent that reached this server at ``request_base_url``."""
        if self._public_urls_configured or not request_base_url:
            return list(self.public_urls)
        return [request_base_url.rstrip("/")]

    @property
    def agent_alive_window(self) -> timedelta:
        """How long after its last check-in an agent still counts as alive."""
        return timedelta(seconds=self.heartbeat_interval_s + self.heartbeat_grace_s)

    @property
    def url(self) -> str:
        """The effective database URL."""
        return self.database_url or f"sqlite:///{self.data_dir / 'esm.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            path = Path(config_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"{CONFIG_ENV}={config_file}: no such file")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings; ``None`` overrides are ignored; any bad value is one ConfigError."""
    values = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"]) or "settings"
        raise ConfigError(f"setting {name}: {error['msg']}") from None
    except ValueError as exc:  # e.g. an unreadable TOML file
        raise ConfigError(f"{CONFIG_ENV}: {exc}") from None

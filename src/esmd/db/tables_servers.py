"""The communication-server registry: one row per ``esmd serve`` process, refreshed by it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Float, Table
from sqlmodel import Field, SQLModel

from esmd.db.types import UTCDateTime


class Server(SQLModel, table=True):
    __tablename__ = "servers"

    id: str = Field(max_length=36, primary_key=True)
    address: str = Field(max_length=1024)
    """The URL agents are told to use for this server."""
    version: str = Field(max_length=64)
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    last_seen: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False, index=True))
    agents_served: int = Field(default=0, sa_column=Column(BigInteger, nullable=False))
    requests_per_s: float = Field(default=0.0, sa_column=Column(Float, nullable=False))
    heartbeat_s: float = Field(default=10.0, sa_column=Column(Float, nullable=False))
    """Its refresh period: it is gone when its row is older than three of them."""


SERVERS: Table = Server.__table__  # type: ignore[attr-defined]

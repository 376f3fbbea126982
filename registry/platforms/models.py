"""Platform keys: one row per key issued to a platform (only the key's SHA-256 is kept)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from registry.infra.base import Base, UTCDateTime, utcnow


class PlatformKey(Base):
    __tablename__ = "platform_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))  # the organisation
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    per_minute: Mapped[int] = mapped_column(Integer)  # items, not requests
    per_day: Mapped[int] = mapped_column(Integer)
    origins: Mapped[list] = mapped_column(JSON, default=list)  # browser origins allowed to call bulk (CORS)

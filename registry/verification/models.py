"""The query log: one row per verification (no foreign keys: it grows like `report_numbers`)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from registry.infra.base import Base, BigId, UTCDateTime


class QueryLog(Base):
    __tablename__ = "query_log"
    __table_args__ = (Index("ix_query_log_number_at", "number", "at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    number: Mapped[str] = mapped_column(String(200))
    institution_text: Mapped[str | None] = mapped_column(Text)
    institution_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    client: Mapped[str] = mapped_column(String(64))
    bulk: Mapped[bool | None] = mapped_column(Boolean)  # asked in a bulk request (POST /api/v1/verify/bulk)
    platform_id: Mapped[int | None] = mapped_column(Integer)  # the platform key of a bulk request

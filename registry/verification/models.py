"""The query log: one row per verification (no foreign keys: it grows like `report_numbers`).

On PostgreSQL it is partitioned by UTC day (``RANGE (at)``, migration 0012) and has no primary
key — nothing reads a row by id, and every index slows the flush (COPY) that the verify path
feeds. The model keeps ``id`` as its key for the ORM (and SQLite's rowid). Two indexes serve the
readers: ``(number, at)`` for a number's history in casework, and ``(platform_id, at)`` on the
rows of bulk requests only, for the platforms' use per day.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from registry.infra.base import Base, BigId, UTCDateTime

BULK_ROWS = text("platform_id IS NOT NULL")


class QueryLog(Base):
    __tablename__ = "query_log"
    __table_args__ = (
        Index("ix_query_log_number_at", "number", "at"),
        Index("ix_query_log_platform_id_at", "platform_id", "at", postgresql_where=BULK_ROWS, sqlite_where=BULK_ROWS),
        {"postgresql_partition_by": "RANGE (at)"},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    number: Mapped[str] = mapped_column(String(200))
    institution_text: Mapped[str | None] = mapped_column(Text)
    institution_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    client: Mapped[str] = mapped_column(String(64))
    bulk: Mapped[bool | None] = mapped_column(Boolean)  # asked in a bulk request (POST /api/v1/verify/bulk)
    platform_id: Mapped[int | None] = mapped_column(Integer)  # the platform key of a bulk request

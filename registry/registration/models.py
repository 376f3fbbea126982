"""Batches, report numbers and uploads awaiting confirmation.

`report_numbers` carries no foreign keys on purpose: it grows to 亿 rows, is bulk-loaded with COPY and
(on PostgreSQL) hash-partitioned; the registry's loaders are its only writers and guarantee the references.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.infra.base import Base, BigId, UTCDateTime, utcnow
from registry.institutions.models import Institution


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("institution_id", "quarter", "sha256", name="uq_batches_institution_quarter_sha256"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    quarter: Mapped[str] = mapped_column(String(6))
    source: Mapped[str] = mapped_column(String(8))  # file | api
    file_name: Mapped[str | None] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    # of ``accepted``, the numbers registered with their report file's SHA-256 (migration 0021)
    documents: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    institution: Mapped[Institution] = relationship()


class ReportNumber(Base):
    __tablename__ = "report_numbers"
    # Looked up by number only (verification, withdrawal, the import's clash check): the primary
    # key serves them all; per-institution figures come from batches (migration 0005).
    __table_args__ = ({"postgresql_partition_by": "HASH (number)"},)

    number: Mapped[str] = mapped_column(String(64), primary_key=True)
    institution_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    quarter: Mapped[str] = mapped_column(String(6))
    batch_id: Mapped[int] = mapped_column(BigInteger)
    registered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    withdraw_reason: Mapped[str | None] = mapped_column(String(500))
    # 16 random bytes of the registration's commitment in the transparency log (registry/tlog),
    # reused by its withdrawal and restore entries
    salt: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    # the SHA-256 (64 lowercase hex) of the issued report file, when the institution registered
    # one with the number: the verify answer compares a holder's file with it, and the log's
    # commitment includes it (docs/transparency.md)
    sha256: Mapped[str | None] = mapped_column(String(64))


REPORT_NUMBER_PARTITIONS = 16


class Upload(Base):
    """A file uploaded through the portal: checked (preview), then registered once confirmed.

    The file itself waits under FILES_DIR with a random name; ``state`` goes
    checking → ready → (queued →) importing → done, or ends refused, failed or cancelled (a
    failed or stuck one may be retried); ``report`` is the validation report. The files are
    deleted some time after it finished (``files_deleted_at``).
    """

    __tablename__ = "uploads"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    quarter: Mapped[str] = mapped_column(String(6))
    file_name: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    uploaded_by: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(12), default="checking")
    progress: Mapped[int] = mapped_column(BigInteger, default=0)
    report: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    files_deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class NumberEvent(Base):
    """The history of a registered number: one row per withdrawal and per restore, with who did
    it, when, why and through what (portal, cli, api). ``report_numbers`` keeps the current
    state only; this table tells the story (withdrawn by mistake, then restored)."""

    __tablename__ = "number_events"
    __table_args__ = (Index("ix_number_events_number_institution", "number", "institution_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(64))
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"))
    kind: Mapped[str] = mapped_column(String(12))  # withdrawn | restored
    reason: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(8))  # portal | cli | api
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

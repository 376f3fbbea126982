"""The statistics year, each legal entity's filing for it, and the filings' sealed trail."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.accounts.models import SealedEntry
from registry.infra.base import Base, UTCDateTime, utcnow
from registry.institutions.models import Authority, Institution


class StatisticsYear(Base):
    """A survey year opened for filing (the notice published in December), with the schema
    version of its survey form and the deadlines the admin set for it."""

    __tablename__ = "statistics_years"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    schema_version: Mapped[str] = mapped_column(String(16))
    file_by: Mapped[dt.date] = mapped_column(Date)  # institutions file (January)
    review_by: Mapped[dt.date] = mapped_column(Date)  # reviewers review (February)
    opens_on: Mapped[dt.date | None] = mapped_column(Date)  # the notice published (December); None: 1 December
    check_by: Mapped[dt.date | None] = mapped_column(Date)  # SAMR's quality check; None: 31 March
    # the annual and social responsibility reports' sections (registry/statistics/reports.py); None: the defaults
    sections: Mapped[list | None] = mapped_column(JSON)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    opened_by: Mapped[str] = mapped_column(String(100))


class Filing(Base):
    """One legal entity's (one USCC's) filing for one year. ``reviewer`` decides its jurisdiction
    (who may see and review it); ``data`` holds the survey's answers as typed (a draft may hold
    invalid ones; a submission never does); ``comments`` the reviewer's per-field comments of the
    last return."""

    __tablename__ = "statistics_filings"
    __table_args__ = (UniqueConstraint("year", "institution_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    year: Mapped[int] = mapped_column(ForeignKey("statistics_years.year"), index=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    comments: Mapped[dict] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)  # the reviewer's general comment or reopening reason
    report: Mapped[dict | None] = mapped_column(JSON)  # the report sections' texts by section key
    # the sections' PDF files: [{id, section, name, size, sha256, pages, path, at, by}]
    attachments: Mapped[list | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # first submission
    approved_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    institution: Mapped[Institution] = relationship(lazy="joined")
    reviewer: Mapped[Authority] = relationship(lazy="joined")


class ReviewGroup(Base):
    """The national review group (行业评审组) of national-certificate holders in one professional
    field, as an admin set it (no row: ``REVIEW_GROUPS`` in registry/statistics/service.py);
    ``authority_id`` None: no review group (CNAS reviews)."""

    __tablename__ = "statistics_review_groups"

    field: Mapped[str] = mapped_column(String(40), primary_key=True)
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("authorities.id"))


class FilingEvent(SealedEntry, Base):
    """One transition of a filing, sealed into the statistics trail (registry/statistics/trail.py:
    the admin log's chain machinery with its own counter, subkey and head). Append-only."""

    __tablename__ = "statistics_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    filing_id: Mapped[int] = mapped_column(ForeignKey("statistics_filings.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)

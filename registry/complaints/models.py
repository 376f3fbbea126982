"""Complaints, their trail of events and findings, and the holiday table of the working-day calendar."""
from __future__ import annotations

import datetime as dt
import secrets

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.infra.base import Base, BigId, UTCDateTime, utcnow
from registry.institutions.models import Authority
from registry.numbers.quarters import SHANGHAI


class Complaint(Base):
    """A public report of a suspicious report number, routed to one authority
    (docs/contract.md, "Regulatory rules").

    ``complainant_name``/``complainant_contact`` are personal data: only the handling authority
    and SAMR may see them, never the public status page. The audit chain seals them as hashes
    salted with ``personal_salt`` (registry/complaints/audit.py), so that erasing them together
    with the salt (a sealed redaction event) leaves nothing in the chain to guess them from.
    """

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    # SHA-256 of the tracking code (registry.complaints.service.hash_tracking_code): the code is the
    # complainant's bearer secret and is never stored; officers see the complaint's reference
    tracking_hash: Mapped[str] = mapped_column(String(64), unique=True)
    number: Mapped[str] = mapped_column(String(200))
    institution_text: Mapped[str | None] = mapped_column(String(200))
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"), index=True)
    category: Mapped[str] = mapped_column(String(32))  # not_found | wrong_institution | altered | other
    description: Mapped[str] = mapped_column(Text)
    complainant_name: Mapped[str | None] = mapped_column(String(100))
    complainant_contact: Mapped[str | None] = mapped_column(String(200))
    personal_salt: Mapped[str | None] = mapped_column(String(32), default=lambda: secrets.token_hex(16))
    attachment_path: Mapped[str | None] = mapped_column(String(255))
    attachment_type: Mapped[str | None] = mapped_column(String(64))
    verdict_status: Mapped[str | None] = mapped_column(String(16))
    verdict_json: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="received")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    authority: Mapped[Authority] = relationship(lazy="joined")
    events: Mapped[list["ComplaintEvent"]] = relationship(order_by="ComplaintEvent.id", viewonly=True)

    @property
    def reference(self) -> str:
        """The complaint's reference for officers and exports, ``TS-<year>-<id>``."""
        return complaint_reference(self.id, self.created_at)


def complaint_reference(complaint_id: int, created_at: dt.datetime) -> str:
    """``TS-2026-000123``: the year received (Asia/Shanghai) and the id — what officers and
    exports call a complaint (the tracking code stays with the complainant)."""
    return f"TS-{created_at.astimezone(SHANGHAI).year}-{complaint_id:06d}"


class ComplaintEvent(Base):
    """One entry of a complaint's trail; append-only (never updated or deleted)."""

    __tablename__ = "complaint_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(100))
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str | None] = mapped_column(Text)
    # the audit chain (migrations 0004 and 0008, registry/complaints/audit.py): position in the
    # chain of all events and in its complaint's trail, the digest of the complaint's content after
    # this event, the id of the key and the version of the seal, and the HMAC seal itself
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    mac: Mapped[str | None] = mapped_column(String(64))
    cseq: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str | None] = mapped_column(String(32))
    chain_version: Mapped[int | None] = mapped_column(SmallInteger)  # None: version 1 (before 0008)


class ComplaintFinding(Base):
    """How a concluded complaint was found: forged | not_registered | misreported | unfounded."""

    __tablename__ = "complaint_findings"

    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), primary_key=True)
    finding: Mapped[str] = mapped_column(String(32), index=True)
    concluded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    concluded_by: Mapped[str] = mapped_column(String(100))


class Holiday(Base):
    """A public holiday, or (``is_workday``) a make-up workday, for dates the calendar lacks."""

    __tablename__ = "holidays"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_workday: Mapped[bool] = mapped_column(Boolean, default=False)

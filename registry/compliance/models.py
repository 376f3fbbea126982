"""The history of institutions' abnormal flag (异常检验检测机构)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.infra.base import Base, UTCDateTime, utcnow
from registry.institutions.models import Authority


class AbnormalMark(Base):
    """One change of an institution's abnormal flag (异常检验检测机构), with who, when and why."""

    __tablename__ = "abnormal_marks"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    abnormal: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(100))
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("authorities.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    authority: Mapped[Authority | None] = relationship(lazy="joined")


class Sanction(Base):
    """A measure against an institution for its reporting duties, with the institution heard:
    proposed by one officer → the institution may state its case (陈述申辩) until ``hearing_due`` →
    a second officer confirms or drops it; a confirmed one may later be lifted. Every step is
    sealed in the admin log (registry/compliance/sanctions.py)."""

    __tablename__ = "sanctions"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    measure: Mapped[str] = mapped_column(String(24))  # warning | public_notice | refuse_applications | abnormal
    ground: Mapped[str] = mapped_column(String(24))  # late_filing | missing_filing | false_filing | missing_uploads | late_uploads
    year: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), default="proposed")  # proposed | confirmed | dropped | lifted
    proposed_by: Mapped[str] = mapped_column(String(100))
    proposed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    hearing_due: Mapped[dt.date] = mapped_column(Date)
    statement: Mapped[str | None] = mapped_column(Text)
    stated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str | None] = mapped_column(Text)
    lifted_by: Mapped[str | None] = mapped_column(String(100))
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lift_reason: Mapped[str | None] = mapped_column(Text)

    authority: Mapped[Authority] = relationship(lazy="joined")

"""The history of institutions' abnormal flag (异常检验检测机构)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, String, Text
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

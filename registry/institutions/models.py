"""Authorities, institutions, their names, addresses and CMA certificates."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, ForeignKey, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.infra.base import Base, UTCDateTime, utcnow


class Authority(Base):
    __tablename__ = "authorities"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(2), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # national | provincial | review_group | accreditation
    name: Mapped[str] = mapped_column(String(100))
    name_en: Mapped[str] = mapped_column(String(120), default="")


class Institution(Base):
    __tablename__ = "institutions"

    id: Mapped[int] = mapped_column(primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), index=True)
    review_authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    abnormal: Mapped[bool] = mapped_column(Boolean, default=False)
    # owns a 国家质检中心: files a social responsibility report with its annual statistics
    national_center: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    review_authority: Mapped[Authority] = relationship(lazy="joined")
    certificates: Mapped[list["Certificate"]] = relationship(
        back_populates="institution", order_by="Certificate.number"
    )
    names: Mapped[list["InstitutionName"]] = relationship(order_by="InstitutionName.valid_from")
    addresses: Mapped[list["InstitutionAddress"]] = relationship(order_by="InstitutionAddress.id")


class InstitutionName(Base):
    """Every name an institution has had; the current one has ``valid_to`` NULL."""

    __tablename__ = "institution_names"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), index=True)
    valid_from: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    valid_to: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class InstitutionAddress(Base):
    __tablename__ = "institution_addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    address: Mapped[str] = mapped_column(String(300))


class Certificate(Base):
    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(12), unique=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    issuing_authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"))
    issued_on: Mapped[dt.date | None] = mapped_column(Date)
    expires_on: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10))  # valid | suspended | revoked | expired

    institution: Mapped[Institution] = relationship(back_populates="certificates")
    issuing_authority: Mapped[Authority] = relationship(lazy="joined")


class CertificateEvent(Base):
    __tablename__ = "certificate_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"), index=True)
    status: Mapped[str] = mapped_column(String(10))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(200))

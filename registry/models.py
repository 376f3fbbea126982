"""The core schema (SPEC.md, "Core schema") as SQLAlchemy 2.0 typed models.

Times are stored as UTC and come back timezone-aware; callers render them in Asia/Shanghai.
`report_numbers` and `query_log` carry no foreign keys on purpose: they are the two tables that
grow to 亿 rows, are bulk-loaded with COPY and (on PostgreSQL) hash-partitioned; the registry's
loaders are the only writers and guarantee the references.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC, on every backend alike."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=dt.timezone.utc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


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


class RegistryState(Base):
    """Small named counters: the institution directory's version, and the like."""

    __tablename__ = "registry_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


REPORT_NUMBER_PARTITIONS = 16


from sqlalchemy import JSON  # noqa: E402 - kept with the complaint models, added by their own migration


class Complaint(Base):
    """A public report of a suspicious report number, routed to one authority (SPEC.md, "complaint").

    ``complainant_name``/``complainant_contact`` are personal data: only the handling authority
    and SAMR may see them, never the public status page.
    """

    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    tracking_code: Mapped[str] = mapped_column(String(32), unique=True)
    number: Mapped[str] = mapped_column(String(200))
    institution_text: Mapped[str | None] = mapped_column(String(200))
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    authority_id: Mapped[int] = mapped_column(ForeignKey("authorities.id"), index=True)
    category: Mapped[str] = mapped_column(String(32))  # not_found | wrong_institution | altered | other
    description: Mapped[str] = mapped_column(Text)
    complainant_name: Mapped[str | None] = mapped_column(String(100))
    complainant_contact: Mapped[str | None] = mapped_column(String(200))
    attachment_path: Mapped[str | None] = mapped_column(String(255))
    attachment_type: Mapped[str | None] = mapped_column(String(64))
    verdict_status: Mapped[str | None] = mapped_column(String(16))
    verdict_json: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="received")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    authority: Mapped[Authority] = relationship(lazy="joined")
    events: Mapped[list["ComplaintEvent"]] = relationship(order_by="ComplaintEvent.id", viewonly=True)


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
    # the audit chain (migration 0004, registry/audit.py): position and HMAC seal
    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    mac: Mapped[str | None] = mapped_column(String(64))


# --- accounts, API tokens, uploads awaiting confirmation, holidays (migration 0003) ---------


class Account(Base):
    """A person who signs in: an institution user (bound to an institution), a regulator user
    (bound to an authority) or an admin. Passwords are stored as werkzeug scrypt hashes."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # institution | regulator | admin
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("authorities.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    failed_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    institution: Mapped[Institution | None] = relationship(lazy="joined")
    authority: Mapped[Authority | None] = relationship(lazy="joined")


class ApiToken(Base):
    """A lab system's credential for the upload API; only the SHA-256 of the token is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class IdempotentResponse(Base):
    """The stored answer to an API call made with an ``Idempotency-Key``: a retry gets it again."""

    __tablename__ = "idempotent_responses"
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_idempotent_responses_token_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Upload(Base):
    """A file uploaded through the portal: checked (preview), then registered once confirmed.

    The file itself waits under FILES_DIR with a random name; ``state`` goes
    checking → ready → queued → importing → done (or failed); ``report`` is the validation report.
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


class Holiday(Base):
    """A public holiday, or (``is_workday``) a make-up workday, for dates the calendar lacks."""

    __tablename__ = "holidays"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date, unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_workday: Mapped[bool] = mapped_column(Boolean, default=False)


# --- regulator console: abnormal institutions' history, complaint findings (migration 0004) ----


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


class ComplaintFinding(Base):
    """How a concluded complaint was found: forged | not_registered | misreported | unfounded."""

    __tablename__ = "complaint_findings"

    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), primary_key=True)
    finding: Mapped[str] = mapped_column(String(32), index=True)
    concluded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    concluded_by: Mapped[str] = mapped_column(String(100))

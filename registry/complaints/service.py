"""Complaint intake: create a complaint, route it, keep its trail, and show the public its status.

Flask-free (docs/architecture.md, "Layers"). A complaint goes to the review authority of the
institution it is about; an unknown institution goes to the national triage queue (authority
``00``). The trail (``complaint_events``) is append-only; the public sees only events marked
public, never personal data or internal notes.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from registry.institutions.directory import InstitutionDirectory, InstitutionInfo
from registry.complaints.models import Complaint, ComplaintEvent, complaint_reference
from registry.institutions.models import Authority
from registry.numbers.quarters import Clock, system_clock
from registry.verification.service import Verdict

if TYPE_CHECKING:
    from registry.complaints.audit import AuditChain

CATEGORIES = ("not_found", "wrong_institution", "altered", "other")
STATUSES = ("received", "accepted", "rejected", "concluded")
CLOSED_STATUSES = ("rejected", "concluded")
CLOSING_KINDS = ("rejected", "concluded")  # the events that close a complaint (registry/complaints/casework.py)
NATIONAL_TRIAGE = "00"
MAX_DESCRIPTION = 2000
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024

# Magic bytes of the attachment types we accept; the file name and declared type are ignored.
_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"%PDF-", "application/pdf", ".pdf"),
)

_CODE_BYTES = 10  # 80 bits of randomness: 16 base32 characters, shown in groups of four
_CODE_RE = re.compile(r"^[A-Z2-7]{16}$")


class AttachmentRefused(ValueError):
    """The attachment is too large or not a JPEG, PNG or PDF by its content."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason  # too_large | wrong_type | empty


@dataclass(frozen=True)
class StoredAttachment:
    path: str  # relative to the files directory
    content_type: str


def new_tracking_code() -> str:
    return base64.b32encode(secrets.token_bytes(_CODE_BYTES)).decode("ascii")


def normalize_tracking_code(text: str) -> str | None:
    """``abcd-efgh …`` as typed or linked → the stored form; None if it cannot be a code."""
    code = re.sub(r"[\s-]", "", text or "").upper()
    return code if _CODE_RE.match(code) else None


def format_tracking_code(code: str) -> str:
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def hash_tracking_code(code: str) -> str:
    """What the database keeps of a (normalised) tracking code. A plain SHA-256, not a keyed
    hash: the codes are 80 random bits, so the hash cannot be reversed by guessing, and it must
    survive a rotation of every key."""
    return hashlib.sha256(code.encode("ascii")).hexdigest()


_REFERENCE_RE = re.compile(r"^TS-?(\d{4})-?(\d{1,12})$")


def parse_reference(text: str) -> tuple[int, int] | None:
    """``(year, id)`` of a reference as typed (case, dashes and spaces do not matter), else None."""
    found = _REFERENCE_RE.match(re.sub(r"\s", "", text or "").upper())
    return (int(found.group(1)), int(found.group(2))) if found else None


def sniff_attachment(head: bytes) -> tuple[str, str] | None:
    """(content type, extension) from the first bytes of a file, or None if not accepted."""
    for magic, content_type, ext in _MAGIC:
        if head.startswith(magic):
            return content_type, ext
    return None


def store_attachment(stream: BinaryIO, files_dir: Path, *, max_bytes: int = MAX_ATTACHMENT_BYTES,
                     folder_name: str = "complaints") -> StoredAttachment:
    """Check and copy an uploaded file under ``files_dir/complaints/`` (or ``folder_name``) with a
    random name.

    Raises :class:`AttachmentRefused`; nothing is left on disk when it does.
    """
    data = stream.read(max_bytes + 1)
    if not data:
        raise AttachmentRefused("empty")
    if len(data) > max_bytes:
        raise AttachmentRefused("too_large")
    kind = sniff_attachment(data[:16])
    if kind is None:
        raise AttachmentRefused("wrong_type")
    content_type, ext = kind
    folder = files_dir / folder_name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = secrets.token_hex(16) + ext
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # complainants' files: ours only
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return StoredAttachment(path=f"{folder_name}/{name}", content_type=content_type)


@dataclass(frozen=True)
class NewComplaint:
    number: str
    institution_text: str | None
    category: str
    description: str
    complainant_name: str | None = None
    complainant_contact: str | None = None
    attachment: StoredAttachment | None = None


@dataclass(frozen=True)
class PublicEvent:
    at: dt.datetime
    kind: str


@dataclass(frozen=True)
class PublicComplaint:
    """What the holder of a tracking code may see: no personal data, no internal notes."""

    tracking_code: str
    number: str
    institution_text: str | None
    category: str
    status: str
    authority_code: str
    authority_name: str
    authority_name_en: str
    created_at: dt.datetime
    updated_at: dt.datetime
    events: tuple[PublicEvent, ...]
    # False when the trail or the row fail their seals: the page then says so and shows no finding
    intact: bool = True

    @property
    def display_code(self) -> str:
        return format_tracking_code(self.tracking_code)


class ComplaintService:
    def __init__(self, *, sessions: sessionmaker[Session], directory: InstitutionDirectory,
                 clock: Clock = system_clock, chain: AuditChain | None = None) -> None:
        self._sessions = sessions
        self._directory = directory
        self._clock = clock
        self._chain = chain  # checks a complaint against its seals before its status page shows it

    def subject(self, institution_text: str | None, verdict: Verdict | None) -> InstitutionInfo | None:
        """The institution a complaint is about: the one named, else the sole registrant found."""
        named = self._directory.resolve(institution_text) if institution_text else None
        if named is not None:
            return named
        if verdict is not None and verdict.institution is not None:
            return verdict.institution
        return None

    def submit(self, complaint: NewComplaint, *, verdict: Verdict | None) -> str:
        """Store the complaint with its verdict and first events; returns the tracking code."""
        if complaint.category not in CATEGORIES:
            raise ValueError(f"unknown complaint category {complaint.category!r}")
        subject = self.subject(complaint.institution_text, verdict)
        authority_code = subject.review_authority_code if subject else NATIONAL_TRIAGE
        now = self._clock()
        with self._sessions() as session:
            authority = session.scalar(select(Authority).where(Authority.code == authority_code))
            if authority is None:
                raise LookupError(f"authority {authority_code} is not seeded")
            code = new_tracking_code()
            row = Complaint(
                tracking_hash=hash_tracking_code(code),
                number=complaint.number,
                institution_text=complaint.institution_text or None,
                institution_id=subject.id if subject else None,
                authority_id=authority.id,
                category=complaint.category,
                description=complaint.description[:MAX_DESCRIPTION],
                complainant_name=complaint.complainant_name or None,
                complainant_contact=complaint.complainant_contact or None,
                attachment_path=complaint.attachment.path if complaint.attachment else None,
                attachment_type=complaint.attachment.content_type if complaint.attachment else None,
                verdict_status=verdict.status if verdict else None,
                verdict_json=verdict.to_json() if verdict else None,
                status="received",
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            self._append(session, row, "submitted", actor="public", public=True, at=now)
            routing = "被投诉机构的审核部门" if subject else "机构不明，由总局分拣"
            self._append(session, row, "routed", actor="system", public=True, at=now,
                         note=f"{authority.code} {authority.name} ({routing})")
            session.commit()
            return code

    @staticmethod
    def _append(session: Session, complaint: Complaint, kind: str, *, actor: str, public: bool,
                at: dt.datetime, note: str | None = None) -> ComplaintEvent:
        event = ComplaintEvent(complaint_id=complaint.id, at=at, kind=kind, actor=actor, public=public, note=note)
        session.add(event)
        return event

    def public_view(self, tracking_code: str) -> PublicComplaint | None:
        code = normalize_tracking_code(tracking_code)
        if code is None:
            return None
        with self._sessions() as session:
            row = session.scalar(select(Complaint).where(Complaint.tracking_hash == hash_tracking_code(code)))
            if row is None:
                return None
            events = session.scalars(
                select(ComplaintEvent)
                .where(ComplaintEvent.complaint_id == row.id, ComplaintEvent.public.is_(True))
                .order_by(ComplaintEvent.id)
            ).all()
            return PublicComplaint(
                tracking_code=code,
                number=row.number,
                institution_text=row.institution_text,
                category=row.category,
                status=row.status,
                authority_code=row.authority.code,
                authority_name=row.authority.name,
                authority_name_en=row.authority.name_en,
                created_at=row.created_at,
                updated_at=row.updated_at,
                events=tuple(PublicEvent(at=e.at, kind=e.kind) for e in events),
                intact=self._chain.intact_for(session, row.id) if self._chain is not None else True,
            )

    def redact_personal_data(self, complaint_id: int, actor: str, reason: str) -> bool:
        """Erase the complainant's name and contact (and the salt the chain hashed them with), as
        one sealed ``personal_data_redacted`` event; the chain still verifies afterwards. Returns
        False when there was nothing left to erase (nothing is recorded then)."""
        reason = (reason or "").strip()
        actor = (actor or "").strip()[:100]
        if not reason or not actor:
            raise ValueError("a redaction needs an actor and a reason")
        with self._sessions() as session:
            row = session.scalar(select(Complaint).where(Complaint.id == complaint_id).with_for_update(of=Complaint))
            if row is None:
                raise LookupError("no such complaint")
            if row.complainant_name is None and row.complainant_contact is None and row.personal_salt is None:
                return False
            now = self._clock()
            row.complainant_name = row.complainant_contact = row.personal_salt = None
            row.updated_at = now
            self._append(session, row, "personal_data_redacted", actor=actor, public=False, at=now,
                         note=reason[:4000])
            session.commit()
            return True

    def erase_expired_contacts(self, *, closed_before: dt.datetime, limit: int = 500) -> int:
        """Retention (``COMPLAINT_CONTACT_DAYS``): erase, each as a sealed redaction event, the
        complainant's name and contact of complaints closed (rejected or concluded) before
        ``closed_before``; at most ``limit`` per call. Returns how many were erased."""
        closed_at = (select(ComplaintEvent.complaint_id, func.max(ComplaintEvent.at).label("at"))
                     .where(ComplaintEvent.kind.in_(CLOSING_KINDS)).group_by(ComplaintEvent.complaint_id)
                     .subquery())
        with self._sessions() as session:
            due = session.scalars(
                select(Complaint.id).join(closed_at, closed_at.c.complaint_id == Complaint.id)
                .where(Complaint.status.in_(CLOSED_STATUSES), closed_at.c.at < closed_before,
                       or_(Complaint.complainant_name.is_not(None), Complaint.complainant_contact.is_not(None),
                           Complaint.personal_salt.is_not(None)))
                .order_by(Complaint.id).limit(limit)).all()
        erased = 0
        for complaint_id in due:
            erased += self.redact_personal_data(complaint_id, "retention",
                                                "保存期限届满，自动删除投诉人联系方式 / retention period over: "
                                                "contact data erased")
        return erased


__all__ = [
    "AttachmentRefused", "CATEGORIES", "ComplaintService", "MAX_ATTACHMENT_BYTES", "MAX_DESCRIPTION",
    "NATIONAL_TRIAGE", "NewComplaint", "PublicComplaint", "PublicEvent", "StoredAttachment",
    "complaint_reference", "format_tracking_code", "hash_tracking_code", "new_tracking_code",
    "normalize_tracking_code", "parse_reference", "sniff_attachment", "store_attachment",
]

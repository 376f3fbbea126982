"""Institutions and their certificates: creation, renaming, certificate upserts with history."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.institutions.authorities import find_authority
from registry.institutions.directory import bump_directory_version
from registry.infra.base import utcnow
from registry.institutions.models import Authority, Certificate, CertificateEvent, Institution, InstitutionAddress, InstitutionName
from registry.numbers.normalize import name_key, normalize_uscc

CERTIFICATE_STATUSES = ("valid", "suspended", "revoked", "expired")


class CertificateRecord(Protocol):
    """What a certificate list row carries (the importers' ``CertificateRow`` fits)."""

    line: int
    number: str
    institution_name: str
    uscc: str
    issued_on: dt.date | None
    expires_on: dt.date | None
    status: str
    addresses: tuple[str, ...]
    review_authority: str | None
    issuing_authority_code: str


@dataclass
class CertificateImportResult:
    institutions_created: int = 0
    institutions_renamed: int = 0
    certificates_created: int = 0
    certificates_updated: int = 0
    status_changes: int = 0
    problems: list[tuple[int, str, str, str]] = field(default_factory=list)  # line, raw, zh, en


def authority_by_code(session: Session, code: str) -> Authority | None:
    return session.scalar(select(Authority).where(Authority.code == code))


def get_institution_by_uscc(session: Session, uscc: str) -> Institution | None:
    return session.scalar(select(Institution).where(Institution.uscc == normalize_uscc(uscc)))


def create_institution(
    session: Session, *, uscc: str, name: str, review_authority: Authority, now: dt.datetime | None = None
) -> Institution:
    now = now or utcnow()
    inst = Institution(
        uscc=normalize_uscc(uscc), name=name.strip(), name_key=name_key(name), review_authority_id=review_authority.id,
        abnormal=False, created_at=now,
    )
    session.add(inst)
    session.flush()
    session.add(InstitutionName(institution_id=inst.id, name=inst.name, name_key=inst.name_key, valid_from=now))
    bump_directory_version(session)
    return inst


def rename_institution(session: Session, inst: Institution, new_name: str, now: dt.datetime | None = None) -> bool:
    """Make ``new_name`` current and keep the old one as a former name. Returns whether it changed."""
    new_name = new_name.strip()
    if not new_name or name_key(new_name) == inst.name_key:
        return False
    now = now or utcnow()
    for row in session.scalars(
        select(InstitutionName).where(InstitutionName.institution_id == inst.id, InstitutionName.valid_to.is_(None))
    ):
        row.valid_to = now
    inst.name, inst.name_key = new_name, name_key(new_name)
    session.add(InstitutionName(institution_id=inst.id, name=new_name, name_key=inst.name_key, valid_from=now))
    bump_directory_version(session)
    return True


def set_certificate_status(session: Session, cert: Certificate, status: str, source: str, now: dt.datetime | None = None) -> bool:
    if cert.status == status and cert.id is not None:
        return False
    cert.status = status
    session.flush()
    session.add(CertificateEvent(certificate_id=cert.id, status=status, changed_at=now or utcnow(), source=source))
    return True


def import_certificate_rows(session: Session, rows: Iterable[CertificateRecord], *, source: str) -> CertificateImportResult:
    """Upsert certificates by number, institutions by USCC; keep status and name history.

    Runs inside the caller's transaction; the caller commits (all rows or none).
    """
    result = CertificateImportResult()
    now = utcnow()
    authorities = {a.code: a for a in session.scalars(select(Authority))}
    for row in rows:
        issuing = authorities.get(row.issuing_authority_code)
        if issuing is None:
            result.problems.append((row.line, row.number, f"发证机关代码 {row.issuing_authority_code} 不存在", f"unknown issuing authority code {row.issuing_authority_code}"))
            continue
        inst = session.scalar(select(Institution).where(Institution.uscc == row.uscc))
        review = None
        if row.review_authority:
            review = find_authority(session, row.review_authority)
            if review is None:
                result.problems.append((row.line, row.review_authority, f"审核部门“{row.review_authority}”无法识别", f"review authority {row.review_authority!r} is not known"))
                continue
        if inst is None:
            inst = create_institution(session, uscc=row.uscc, name=row.institution_name, review_authority=review or issuing, now=now)
            result.institutions_created += 1
        else:
            if rename_institution(session, inst, row.institution_name, now):
                result.institutions_renamed += 1
            if review is not None and inst.review_authority_id != review.id:
                inst.review_authority_id = review.id
                bump_directory_version(session)
        known = {a.address for a in session.scalars(select(InstitutionAddress).where(InstitutionAddress.institution_id == inst.id))}
        for address in row.addresses:
            if address and address not in known:
                session.add(InstitutionAddress(institution_id=inst.id, address=address[:300]))
                known.add(address)
        cert = session.scalar(select(Certificate).where(Certificate.number == row.number))
        if cert is None:
            cert = Certificate(number=row.number, institution_id=inst.id, issuing_authority_id=issuing.id,
                               issued_on=row.issued_on, expires_on=row.expires_on, status=row.status)
            session.add(cert)
            session.flush()
            session.add(CertificateEvent(certificate_id=cert.id, status=row.status, changed_at=now, source=source))
            result.certificates_created += 1
        else:
            cert.institution_id = inst.id
            cert.issued_on, cert.expires_on = row.issued_on, row.expires_on
            if set_certificate_status(session, cert, row.status, source, now):
                result.status_changes += 1
            result.certificates_updated += 1
    bump_directory_version(session)
    return result

"""Keyword builders for test data (STYLE.md: builders, not shared mutable fixtures)."""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools

from sqlalchemy import select

from registry.institutions.authorities import seed_authorities
from registry.institutions.service import create_institution, rename_institution
from registry.institutions.models import Authority, Certificate, CertificateEvent, Institution
from registry.numbers.normalize import make_uscc, normalize_number
from registry.numbers.quarters import Quarter

_serial = itertools.count(1)


def uscc_for(n: int, division: str = "110000") -> str:
    return make_uscc(f"91{division}{n:09d}"[:17])


def make_institution(session, *, name: str | None = None, province: str = "11", uscc: str | None = None,
                     certificate: str | None = None, certificate_status: str = "valid", abnormal: bool = False,
                     former_names: tuple[str, ...] = ()) -> Institution:
    """An institution with one certificate, committed."""
    seed_authorities(session)
    n = next(_serial)
    authority = session.scalar(select(Authority).where(Authority.code == province))
    first_name = former_names[0] if former_names else (name or f"测试检测中心{n}号")
    inst = create_institution(session, uscc=uscc or uscc_for(n), name=first_name, review_authority=authority)
    for later in list(former_names[1:]) + ([name] if former_names and name else []):
        rename_institution(session, inst, later)
    inst.abnormal = abnormal
    number = certificate or f"20{province}{n:08d}"[:12]
    cert = Certificate(number=number, institution_id=inst.id, issuing_authority_id=authority.id,
                       issued_on=dt.date(2020, 1, 1), expires_on=dt.date(2026, 12, 31), status=certificate_status)
    session.add(cert)
    session.flush()
    session.add(CertificateEvent(certificate_id=cert.id, status=certificate_status, source="test"))
    session.commit()
    return inst


def register(reg, institution: Institution, numbers, *, quarter: str = "2026Q3", source: str = "file"):
    """Register ``numbers`` (raw text) for ``institution`` through the real service."""
    normalised = [normalize_number(n) for n in numbers]
    digest = hashlib.sha256(("\n".join(normalised) + str(next(_serial))).encode()).hexdigest()
    receipt = reg.registration.register(institution_id=institution.id, quarter=Quarter.parse(quarter),
                                        numbers=normalised, sha256=digest, source=source, file_name="test.csv")
    reg.refresh()
    return receipt

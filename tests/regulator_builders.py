"""Keyword builders for the regulator console's tests: complaints, officers, sealed sessions."""
from __future__ import annotations

import datetime as dt
import itertools

from sqlalchemy import select

from registry.complaints.casework import Officer
from registry.complaints.service import hash_tracking_code, new_tracking_code
from registry.complaints.models import Complaint, ComplaintEvent
from registry.institutions.models import Authority

_serial = itertools.count(1)


def authority(session, code: str) -> Authority:
    return session.scalar(select(Authority).where(Authority.code == code))


def officer(session, code: str, username: str | None = None) -> Officer:
    a = authority(session, code)
    return Officer(username=username or f"officer{code}", authority_id=a.id, authority_code=a.code)


def make_complaint(session, *, province: str = "11", institution=None, number: str | None = None,
                   category: str = "not_found", status: str = "received", name: str | None = "张三",
                   contact: str | None = "13800138000", created_at: dt.datetime | None = None,
                   verdict: dict | None = None, attachment: tuple[str, str] | None = None) -> Complaint:
    """A complaint as the public intake stores it (with its submitted/routed events), committed."""
    from registry.institutions.authorities import seed_authorities

    seed_authorities(session)
    n = next(_serial)
    at = created_at or dt.datetime.now(dt.timezone.utc)
    a = authority(session, province)
    code = new_tracking_code()
    row = Complaint(tracking_hash=hash_tracking_code(code), number=number or f"WT-{n:04d}",
                    institution_text=institution.name if institution else None,
                    institution_id=institution.id if institution else None, authority_id=a.id, category=category,
                    description="查不到这个编号", complainant_name=name, complainant_contact=contact,
                    attachment_path=attachment[0] if attachment else None,
                    attachment_type=attachment[1] if attachment else None,
                    verdict_status=(verdict or {}).get("status", "not_found"), verdict_json=verdict or {"status": "not_found", "quarter": None},
                    status=status, created_at=at, updated_at=at)
    session.add(row)
    session.flush()
    session.add(ComplaintEvent(complaint_id=row.id, at=at, kind="submitted", actor="public", public=True))
    session.add(ComplaintEvent(complaint_id=row.id, at=at, kind="routed", actor="system", public=True,
                               note=f"{a.code} {a.name}"))
    session.commit()
    row.tracking_code = code  # the complainant's code, as the intake shows it once (only its hash is stored)
    return row

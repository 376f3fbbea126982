"""Compliance per quarter from certificate history and batches; timelines; leads from the query log."""
import datetime as dt

import pytest
from sqlalchemy import insert

from registry.compliance.service import ComplianceService, valid_intervals
from registry.infra.db import make_session_factory
from registry.compliance.models import AbnormalMark
from registry.institutions.models import Certificate, CertificateEvent
from registry.registration.models import Batch, ReportNumber
from registry.verification.models import QueryLog
from registry.numbers.quarters import SHANGHAI, Quarter
from tests.builders import make_institution
from tests.regulator_builders import make_complaint, officer

NOW = dt.datetime(2026, 10, 15, 10, tzinfo=SHANGHAI)
D = dt.date


def at(y, m, d):
    return dt.datetime(y, m, d, 12, tzinfo=SHANGHAI)


@pytest.fixture
def sessions(engine):
    return make_session_factory(engine)


@pytest.fixture
def service(sessions):
    return ComplianceService(sessions=sessions, clock=lambda: NOW)


def batch(session, inst, quarter, *, when, late=False, source="file", accepted=10):
    session.add(Batch(institution_id=inst.id, quarter=quarter, source=source, sha256=f"{inst.id}{quarter}{when}{source}",
                      accepted=accepted, late=late, created_at=when))
    session.commit()


def set_history(session, inst, events, *, issued=D(2020, 1, 1), expires=D(2030, 12, 31)):
    """Replace the builder's certificate history with ``[(when, status), …]``."""
    cert = inst.certificates[0]
    cert.issued_on, cert.expires_on = issued, expires
    session.query(CertificateEvent).filter_by(certificate_id=cert.id).delete()
    for when, status in events:
        session.add(CertificateEvent(certificate_id=cert.id, status=status, changed_at=when, source="test"))
    session.commit()


def test_valid_intervals_from_history():
    cert = Certificate(number="x", status="valid", issued_on=D(2020, 1, 1), expires_on=D(2030, 12, 31))
    evs = [CertificateEvent(id=1, status="valid", changed_at=at(2021, 1, 1)),
           CertificateEvent(id=2, status="suspended", changed_at=at(2025, 5, 10)),
           CertificateEvent(id=3, status="valid", changed_at=at(2025, 9, 1)),
           CertificateEvent(id=4, status="revoked", changed_at=at(2026, 2, 1))]
    assert valid_intervals(cert, evs) == [(D(2020, 1, 1), D(2025, 5, 9)), (D(2025, 9, 1), D(2026, 1, 31))]
    cert.expires_on = D(2025, 6, 30)
    assert valid_intervals(cert, evs[:1]) == [(D(2020, 1, 1), D(2025, 6, 30))]


def test_standings_per_quarter(session, service):
    on_time = make_institution(session, province="15", name="按时")
    late = make_institution(session, province="15", name="逾期")
    zero = make_institution(session, province="15", name="零报告")
    missing = make_institution(session, province="15", name="未报")
    revoked = make_institution(session, province="15", name="已撤销")
    set_history(session, revoked, [(at(2021, 1, 1), "valid"), (at(2026, 3, 15), "revoked")])
    expired = make_institution(session, province="15", name="已过期")
    set_history(session, expired, [(at(2021, 1, 1), "valid")], expires=D(2025, 12, 31))
    elsewhere = make_institution(session, province="19", name="广东")
    batch(session, on_time, "2026Q2", when=at(2026, 7, 20), accepted=120)
    batch(session, on_time, "2026Q2", when=at(2026, 8, 20), late=True, accepted=5)
    batch(session, late, "2026Q2", when=at(2026, 8, 2), late=True, accepted=7)
    batch(session, zero, "2026Q2", when=at(2026, 7, 2), source="zero", accepted=0)
    batch(session, elsewhere, "2026Q2", when=at(2026, 7, 2))

    shandong = officer(session, "15")
    q2 = service.quarter(shandong, Quarter(2026, 2))
    standing = {r.name: r.standing for r in q2.rows}
    assert standing == {"按时": "on_time", "逾期": "late", "零报告": "zero", "未报": "missing"}
    assert q2.numbers == 132 and q2.expected == 4 and q2.on_time_rate == 0.5
    assert {r.name: r.numbers for r in q2.rows}["按时"] == 125

    q1 = service.quarter(shandong, Quarter(2026, 1))
    assert {r.name for r in q1.rows} == {"按时", "逾期", "零报告", "未报", "已撤销"}  # revoked mid-quarter
    assert {r.standing for r in q1.rows} == {"missing"}
    q3 = service.quarter(shandong, Quarter(2026, 3))
    assert {r.standing for r in q3.rows} == {"pending"}  # its deadline 10-31 has not passed
    assert "已过期" in {r.name for r in service.quarter(shandong, Quarter(2025, 4)).rows}

    samr = service.quarter(officer(session, "00"), Quarter(2026, 2))
    assert "广东" in {r.name for r in samr.rows} and samr.expected == 5

    trend = service.trend(shandong, count=4)
    assert [s.quarter for s in trend] == ["2026Q1", "2026Q2", "2026Q3", "2026Q4"]
    assert trend[1].counts["on_time"] == 1 and trend[1].counts["missing"] == 1 and not trend[1].rows


def test_timeline(session, service):
    lab = make_institution(session, province="15", name="时间线")
    batch(session, lab, "2026Q2", when=at(2026, 7, 3), accepted=3)
    make_complaint(session, province="15", institution=lab, number="TL-1")
    session.add(AbnormalMark(institution_id=lab.id, abnormal=True, reason="未报送", actor="x", at=at(2026, 9, 1)))
    session.commit()
    tl = service.timeline(officer(session, "15"), lab.id)
    kinds = {e.kind for e in tl.entries}
    assert kinds == {"certificate", "batch", "complaint", "abnormal"}
    assert tl.quarters[0][0] == "2026Q4" and ("2026Q2", "on_time", 3) in tl.quarters
    from registry.complaints.casework import NotAllowed

    with pytest.raises(NotAllowed):
        service.timeline(officer(session, "19"), lab.id)


def test_leads(session, service):
    lab = make_institution(session, province="15", name="线索")
    other = make_institution(session, province="19", name="外省")
    rows = []
    for i in range(4):
        rows.append({"at": at(2026, 9, 1 + i), "number": "FAKE-1", "institution_id": lab.id, "status": "not_found",
                     "client": f"c{i}", "institution_text": "线索"})
    rows += [{"at": at(2026, 9, 1), "number": "FAKE-1", "institution_id": lab.id, "status": "not_found",
              "client": "c0", "institution_text": None}]  # a repeat from one client counts once
    rows += [{"at": at(2026, 9, 1), "number": "FEW", "institution_id": lab.id, "status": "not_found",
              "client": f"c{i}", "institution_text": None} for i in range(2)]
    rows += [{"at": at(2026, 9, 1), "number": "LATER-REG", "institution_id": lab.id, "status": "mismatch",
              "client": f"c{i}", "institution_text": None} for i in range(3)]
    rows += [{"at": at(2026, 9, 1), "number": "ELSEWHERE", "institution_id": other.id, "status": "not_found",
              "client": f"c{i}", "institution_text": None} for i in range(5)]
    session.execute(insert(QueryLog), rows)
    session.add(ReportNumber(number="LATER-REG", institution_id=lab.id, quarter="2026Q3", batch_id=1,
                             registered_at=at(2026, 9, 20)))
    session.commit()
    leads = service.leads(officer(session, "15"))
    assert [(x.number, x.clients, x.queries) for x in leads] == [("FAKE-1", 4, 5)]
    assert leads[0].first == at(2026, 9, 1) and leads[0].last == at(2026, 9, 4)
    assert [x.number for x in service.leads(officer(session, "15"), min_clients=2)] == ["FAKE-1", "FEW"]
    assert [x.number for x in service.leads(officer(session, "00"))] == ["ELSEWHERE", "FAKE-1"]

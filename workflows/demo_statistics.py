"""Demo annual statistics filings for three years that look like the real population, scaled to
the demo's institutions (2020: 48,919 institutions — 70.4 % 企业, 22.8 % 事业, 6.7 % 其他; on
average ≈ 733 万元 revenue, 29 staff, 165 instruments), with late, missing, returned and
inconsistent filings so that every check and queue shows something.

Reports per institution follow the demo's own report numbers (``numbers_per_quarter`` × 4, not the
national 11,590), so that the declared-vs-registered check is quiet for honest filers: the demo
registers the missing quarters of the last full year for that. Every transition goes through
:class:`registry.statistics.service.StatisticsService` (so it is sealed); only the dates of
submission and approval are then set back to when they would have happened.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass

from sqlalchemy import func, select

from registry.complaints.casework import Officer
from registry.institutions.models import Authority, Institution
from registry.numbers.normalize import normalize_number
from registry.numbers.quarters import SHANGHAI, Quarter
from registry.registration.models import ReportNumber
from registry.statistics.models import Filing
from registry.statistics.service import StatisticsService

from .demo import lab_code

FIELDS_BY_KIND = {
    "产品质量": ["electrical", "other"], "环境监测": ["environment", "water"], "建设工程": ["construction", "building_materials"],
    "食品": ["food", "agriculture"], "计量": ["metrology"], "机动车": ["vehicle"], "纤维": ["other"], "医疗器械": ["medical_devices", "health"],
}


@dataclass
class StatisticsDemo:
    years: list[int]
    filings: int


def _type_for(i: int) -> str:
    """70 % 企业, 23 % 事业, 7 % 其他 over 40 institutions (28 / 9 / 3)."""
    r = (i * 37) % 40
    return "enterprise" if r < 28 else ("public" if r < 37 else "other")


def _answers(inst: Institution, index: int, year: int, rng: random.Random, reports: int, growth: float) -> dict:
    """One institution's answers: its own size (the same every year, from ``rng`` seeded by the
    institution) grown by ``growth`` with a little noise of the year."""
    noise = random.Random(year * 7919 + index).uniform(0.92, 1.1) * growth
    fields = next((v for k, v in FIELDS_BY_KIND.items() if k in inst.name), ["other"])
    province = inst.review_authority.code
    scale = 2.6 if province == "19" else (1.6 if province in ("10", "11", "15", "01", "09") else 1.0)
    revenue = round(rng.lognormvariate(6.0, 0.8) * scale * noise, 1)  # mean ≈ 730 万元 over the demo's provinces
    staff = max(3, int(rng.lognormvariate(3.1, 0.6) * scale ** 0.5 * noise))  # mean ≈ 29
    instruments = max(5, int(staff * rng.uniform(4.5, 7)))  # ≈ 165
    return {
        "institution_type": _type_for(index), "private": "1" if _type_for(index) == "enterprise" and index % 3 else "0",
        "legal_form": "legal_entity" if index % 11 else "activity_unit", "province": province,
        "city": inst.name.split("市")[0][:10] if "市" in inst.name else inst.name[:2],
        "fields": fields, "revenue": str(revenue), "staff": str(staff), "instruments": str(instruments),
        "instrument_value": str(round(instruments * rng.uniform(5, 12), 1)), "lab_area": str(staff * rng.randint(25, 45)),
        "reports": str(reports), "cnas": "1" if index % 3 != 2 else "0", "national_center": "1" if index % 17 == 4 else "0",
        "specialised": "1" if index % 10 == 3 else "0",
        "certificates": "\n".join(c.number for c in inst.certificates), "sites": "\n".join(a.address for a in inst.addresses),
    }


def _report(inst: Institution, year: int, sections) -> dict[str, str]:
    """The annual (and, for a 国家质检中心, social responsibility) report's sections, in a few words each."""
    return {s.key: f"{inst.name}{year}年度{s.title_zh}：按要求如实填报，详见附件或现场核查记录。" for s in sections
            if s.applies_to(bool(inst.national_center))}


def _register_year(registration, session_factory, year: int, numbers_per_quarter: int, today: dt.date) -> None:
    """Give every demo institution numbers in each past quarter of ``year`` it has none for."""
    with session_factory() as session:
        ids = list(session.scalars(select(Institution.id).order_by(Institution.id)))
        have = set(session.execute(select(ReportNumber.institution_id, ReportNumber.quarter)
                                   .where(ReportNumber.quarter.like(f"{year}Q%")).distinct()).all())
    for index, iid in enumerate(ids):
        for q in range(1, 5):
            quarter = Quarter(year, q)
            if (iid, str(quarter)) in have or quarter.first_day > today:
                continue
            numbers = [normalize_number(f"{lab_code(index)}{year}Q{q}-{k:05d}") for k in range(numbers_per_quarter)]
            digest = hashlib.sha256(f"demo-stat:{iid}:{quarter}".encode()).hexdigest()
            registration.register(institution_id=iid, quarter=quarter, numbers=numbers, sha256=digest,
                                  file_name=f"{quarter}-报告编号.xlsx", created_by="demo")


def _registered(session_factory, year: int) -> dict[int, int]:
    with session_factory() as session:
        return dict(session.execute(select(ReportNumber.institution_id, func.count())
                                    .where(ReportNumber.quarter.like(f"{year}Q%"), ReportNumber.withdrawn_at.is_(None))
                                    .group_by(ReportNumber.institution_id)).all())


def _backdate(session_factory, filing_id: int, *, submitted: dt.date | None, approved: dt.date | None) -> None:
    with session_factory() as session:
        filing = session.get(Filing, filing_id)
        if submitted:
            filing.submitted_at = dt.datetime.combine(submitted, dt.time(10), tzinfo=SHANGHAI)
        if approved and filing.approved_at is not None:
            filing.approved_at = dt.datetime.combine(approved, dt.time(15), tzinfo=SHANGHAI)
        session.commit()


def load_demo_statistics(statistics: StatisticsService, session_factory, registration, *, today: dt.date,
                         numbers_per_quarter: int = 200, seed: int = 20201231) -> StatisticsDemo:
    """Three survey years: two closed (all cases of a real February) and the current one, opened
    in December with a few early filers. Idempotent: years already open are left alone."""
    rng = random.Random(seed)
    current = today.year if today.month == 12 else today.year - 1
    years = [current - 2, current - 1, current]
    if any(y.year in years for y in statistics.years()):
        return StatisticsDemo(years=[], filings=0)
    _register_year(registration, session_factory, current - 1, numbers_per_quarter, today)
    with session_factory() as session:
        insts = list(session.scalars(select(Institution).order_by(Institution.id)))
        for index, inst in enumerate(insts):
            inst.national_center = index % 17 == 4  # owns a 国家质检中心: files a social responsibility report
        session.commit()
        for inst in insts:
            inst.certificates, inst.addresses, inst.review_authority  # noqa: B018 - loaded for the answers
        officers = {a.id: Officer(username="demo-reviewer", authority_id=a.id, authority_code=a.code)
                    for a in session.scalars(select(Authority))}
        session.expunge_all()
    count = 0
    for year in years:
        statistics.open_year(year, actor="demo")
        registered = _registered(session_factory, year)
        closed = year < current
        growth = 1.0 + 0.06 * (year - years[0])
        for index, inst in enumerate(insts):
            officer = officers[inst.review_authority_id]
            declared = registered.get(inst.id) or numbers_per_quarter * 4
            case = index % 10
            if closed and year == current - 1:
                if case == 2:
                    declared = int(declared * 1.6)  # 漏报: more reports declared than numbers uploaded
                elif case == 5:
                    declared = int(declared * 0.5)  # numbers uploaded for reports never declared
            answers = _answers(inst, index, year, random.Random(seed + index), declared, growth)
            if year == current - 1 and index % 13 == 9:
                answers["revenue"] = str(round(float(answers["revenue"]) * 3.2, 1))  # a jump year on year
            if year == current - 1 and index % 19 == 7:
                answers["certificates"] += "\n991234567890"  # a certificate not the entity's
            if closed and index % 20 == 11:
                continue  # missing: never filed
            if not closed and case not in (0, 3, 6):
                if case in (1, 4):
                    statistics.filing_for(inst.id, year, actor="demo")  # a draft begun
                continue
            statistics.save(inst.id, year, answers, actor="demo", report=_report(inst, year, statistics.sections(year)))
            statistics.submit(inst.id, year, actor="demo")
            count += 1
            file_by = dt.date(year + 1, 1, 31)
            submitted = file_by - dt.timedelta(days=rng.randint(1, 25)) if closed else today
            if closed and case == 8:
                submitted = file_by + dt.timedelta(days=rng.randint(3, 12))  # late
            filing_id = statistics.filing_for(inst.id, year, actor="demo").filing.id
            if closed and year == current - 1 and index % 20 == 4:
                statistics.return_filing(officer, filing_id, {"staff": "从业人员数与社保缴纳人数不符，请核实。"})
                _backdate(session_factory, filing_id, submitted=submitted, approved=None)
                continue  # returned and not yet corrected
            if closed and year == current - 1 and index % 20 == 14:
                _backdate(session_factory, filing_id, submitted=submitted, approved=None)
                continue  # still waiting for review
            if closed and year == current - 1 and case == 7:
                statistics.return_filing(officer, filing_id, {"revenue": "请按审计报告填写营业收入。"})
                statistics.save(inst.id, year, answers, actor="demo")
                statistics.submit(inst.id, year, actor="demo")  # resubmitted, awaiting review
                _backdate(session_factory, filing_id, submitted=submitted, approved=None)
                continue
            if closed:
                statistics.approve(officer, filing_id)
                _backdate(session_factory, filing_id, submitted=submitted,
                          approved=file_by + dt.timedelta(days=rng.randint(5, 27)))
            else:
                _backdate(session_factory, filing_id, submitted=submitted, approved=None)
    return StatisticsDemo(years=years, filings=count)


__all__ = ["StatisticsDemo", "load_demo_statistics"]

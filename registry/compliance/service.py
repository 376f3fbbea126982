"""Upload compliance per quarter, an institution's timeline, and leads from the query log.

Who is expected to report for a quarter: the institutions in the officer's jurisdiction that held
a valid certificate at some time during it, according to ``certificate_events``. Those rows record
when the registry learned a status (an import), so the first one is taken to hold from the
certificate's issue date, and every valid stretch ends at the expiry date.

A quarter's standing for an institution: ``zero`` (declared no reports, on time), ``on_time``
(some batch before the deadline), ``late`` (only batches after it), ``missing`` (none, deadline
passed) or ``pending`` (none yet, deadline not passed).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from registry.complaints.casework import Officer
from registry.complaints.models import Complaint
from registry.compliance.models import AbnormalMark
from registry.institutions.models import Certificate, CertificateEvent, Institution
from registry.registration.models import Batch, ReportNumber
from registry.verification.models import QueryLog
from registry.numbers.quarters import REPORTING_BEGAN, Clock, Quarter, SHANGHAI, quarters_between, system_clock

STANDINGS = ("on_time", "late", "zero", "missing", "pending")
LEAD_STATUSES = ("not_found", "mismatch")


@dataclass(frozen=True)
class ComplianceRow:
    institution_id: int
    uscc: str
    name: str
    abnormal: bool
    standing: str
    numbers: int
    batches: int
    first_upload: dt.datetime | None


@dataclass
class QuarterSummary:
    quarter: str
    deadline: dt.date
    counts: Counter = field(default_factory=Counter)
    numbers: int = 0
    rows: list[ComplianceRow] = field(default_factory=list)

    @property
    def expected(self) -> int:
        return sum(self.counts.values())

    @property
    def on_time_rate(self) -> float | None:
        done = self.expected - self.counts["pending"]
        return (self.counts["on_time"] + self.counts["zero"]) / done if done else None


@dataclass(frozen=True)
class TimelineEntry:
    at: dt.datetime
    kind: str  # certificate | batch | complaint | abnormal
    text: str
    ref: int | None = None
    # the entry's parts as codes and values, for a page to put in words: certificate {number,
    # status}; batch {quarter, source, accepted, late}; complaint {number, category, status};
    # abnormal {listed, reason}
    facts: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass
class InstitutionTimeline:
    institution: Institution
    quarters: list[tuple[str, str, int]]  # (quarter, standing or "not_expected", numbers)
    entries: list[TimelineEntry]


@dataclass(frozen=True)
class Lead:
    number: str
    institution_id: int
    institution_name: str
    uscc: str
    clients: int
    queries: int
    first: dt.datetime
    last: dt.datetime


def _day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(SHANGHAI).date()


def valid_intervals(cert: Certificate, events: list[CertificateEvent]) -> list[tuple[dt.date, dt.date]]:
    """The stretches of days during which the certificate was valid."""
    events = sorted(events, key=lambda e: (e.changed_at, e.id))
    if not events:
        spans = [(cert.status, cert.issued_on or dt.date.min, None)]
    else:
        spans = []
        for i, e in enumerate(events):
            start = _day(e.changed_at)
            if i == 0 and cert.issued_on and cert.issued_on < start:
                start = cert.issued_on
            spans.append((e.status, start, _day(events[i + 1].changed_at) if i + 1 < len(events) else None))
    out = []
    for status, start, next_start in spans:
        if status != "valid":
            continue
        end = (next_start - dt.timedelta(days=1)) if next_start else dt.date.max
        if cert.expires_on and cert.expires_on < end:
            end = cert.expires_on
        if end >= start:
            out.append((start, end))
    return out


def standing(batches: int, on_time_batches: int, zero: int, zero_on_time: int, deadline: dt.date,
             today: dt.date) -> str:
    if zero_on_time:
        return "zero"
    if on_time_batches:
        return "on_time"
    if batches:
        return "late"
    return "missing" if today > deadline else "pending"


class ComplianceService:
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def today(self) -> dt.date:
        return self._clock().astimezone(SHANGHAI).date()

    def latest_quarter(self) -> Quarter:
        """The newest quarter whose upload window has opened, i.e. the current one."""
        return Quarter.containing(self.today())

    def summaries(self, officer: Officer, first: Quarter, last: Quarter, *, with_rows: bool = True,
                  institution_id: int | None = None) -> list[QuarterSummary]:
        quarters = quarters_between(first, last)
        today = self.today()
        with self._sessions() as session:
            institutions = self._institutions(session, officer, institution_id)
            expected = self._expected(session, institutions, quarters)
            stats = self._batch_stats(session, [i.id for i in institutions], quarters)
        by_id = {i.id: i for i in institutions}
        out = []
        for q in quarters:
            summary = QuarterSummary(quarter=str(q), deadline=q.deadline)
            for iid in sorted(expected.get(str(q), ()), key=lambda i: by_id[i].name):
                inst = by_id[iid]
                s = stats.get((iid, str(q)), _NO_BATCHES)
                st = standing(s["batches"], s["on_time"], s["zero"], s["zero_on_time"], q.deadline, today)
                summary.counts[st] += 1
                summary.numbers += s["numbers"]
                if with_rows:
                    summary.rows.append(ComplianceRow(iid, inst.uscc, inst.name, bool(inst.abnormal), st,
                                                      s["numbers"], s["batches"], s["first"]))
            out.append(summary)
        return out

    def quarter(self, officer: Officer, quarter: Quarter) -> QuarterSummary:
        return self.summaries(officer, quarter, quarter)[0]

    def trend(self, officer: Officer, *, last: Quarter | None = None, count: int = 8) -> list[QuarterSummary]:
        last = last or self.latest_quarter()
        first = last
        for _ in range(count - 1):
            first = first.previous()
        first = max(first, REPORTING_BEGAN)
        return self.summaries(officer, first, last, with_rows=False)

    def timeline(self, officer: Officer, institution_id: int, *, count: int = 12) -> InstitutionTimeline | None:
        """Quarter by quarter standing plus every dated fact about one institution, newest first."""
        last = self.latest_quarter()
        first = last
        for _ in range(count - 1):
            first = first.previous()
        first = max(first, REPORTING_BEGAN)
        with self._sessions() as session:
            inst = session.get(Institution, institution_id)
            if inst is None:
                return None
            if not officer.oversees(inst):
                from registry.complaints.casework import NotAllowed

                raise NotAllowed("outside this authority's jurisdiction")
            entries: list[TimelineEntry] = []
            certs = {c.id: c for c in session.scalars(select(Certificate).where(Certificate.institution_id == inst.id))}
            for e in session.scalars(select(CertificateEvent).where(CertificateEvent.certificate_id.in_(list(certs)))):
                entries.append(TimelineEntry(e.changed_at, "certificate", f"{certs[e.certificate_id].number} {e.status}",
                                             facts={"number": certs[e.certificate_id].number, "status": e.status}))
            for b in session.scalars(select(Batch).where(Batch.institution_id == inst.id)):
                kind = "zero" if b.source == "zero" else b.source
                entries.append(TimelineEntry(b.created_at, "batch",
                                             f"{b.quarter} {kind} +{b.accepted}{' late' if b.late else ''}", b.id,
                                             facts={"quarter": b.quarter, "source": kind, "accepted": b.accepted,
                                                    "late": bool(b.late)}))
            for c in session.scalars(select(Complaint).where(Complaint.institution_id == inst.id)):
                entries.append(TimelineEntry(c.created_at, "complaint", f"{c.number} {c.category} {c.status}", c.id,
                                             facts={"number": c.number, "category": c.category, "status": c.status}))
            for m in session.scalars(select(AbnormalMark).where(AbnormalMark.institution_id == inst.id)):
                entries.append(TimelineEntry(m.at, "abnormal", f"{'+' if m.abnormal else '-'} {m.reason}", m.id,
                                             facts={"listed": bool(m.abnormal), "reason": m.reason}))
            session.expunge(inst)
        summaries = self.summaries(officer, first, last, institution_id=institution_id)
        quarters = []
        for s in summaries:
            row = s.rows[0] if s.rows else None
            quarters.append((s.quarter, row.standing if row else "not_expected", row.numbers if row else 0))
        entries.sort(key=lambda e: e.at, reverse=True)
        return InstitutionTimeline(institution=inst, quarters=quarters[::-1], entries=entries)

    def leads(self, officer: Officer, *, min_clients: int = 3, limit: int = 200) -> list[Lead]:
        """Numbers not registered by the institution they were claimed for, asked by many clients."""
        with self._sessions() as session:
            registered = exists().where(and_(ReportNumber.number == QueryLog.number,
                                             ReportNumber.institution_id == QueryLog.institution_id))
            clients = func.count(func.distinct(QueryLog.client))
            stmt = (
                select(QueryLog.number, QueryLog.institution_id, Institution.name, Institution.uscc, clients,
                       func.count(), func.min(QueryLog.at), func.max(QueryLog.at))
                .join(Institution, Institution.id == QueryLog.institution_id)
                .where(QueryLog.status.in_(LEAD_STATUSES), ~registered)
                .group_by(QueryLog.number, QueryLog.institution_id, Institution.name, Institution.uscc)
                .having(clients >= min_clients)
                .order_by(clients.desc(), func.max(QueryLog.at).desc())
                .limit(limit)
            )
            if not officer.national:
                stmt = stmt.where(Institution.review_authority_id == officer.authority_id)
            return [Lead(*row) for row in session.execute(stmt).all()]

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _institutions(session: Session, officer: Officer, institution_id: int | None) -> list[Institution]:
        stmt = select(Institution)
        if not officer.national:
            stmt = stmt.where(Institution.review_authority_id == officer.authority_id)
        if institution_id is not None:
            stmt = stmt.where(Institution.id == institution_id)
        rows = list(session.scalars(stmt))
        for inst in rows:
            session.expunge(inst)
        return rows

    @staticmethod
    def _expected(session: Session, institutions: list[Institution], quarters: list[Quarter]) -> dict[str, set[int]]:
        ids = [i.id for i in institutions]
        intervals: dict[int, list[tuple[dt.date, dt.date]]] = defaultdict(list)
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            certs = list(session.scalars(select(Certificate).where(Certificate.institution_id.in_(chunk))))
            events: dict[int, list[CertificateEvent]] = defaultdict(list)
            cert_ids = [c.id for c in certs]
            for cs in range(0, len(cert_ids), 1000):
                for e in session.scalars(select(CertificateEvent)
                                         .where(CertificateEvent.certificate_id.in_(cert_ids[cs:cs + 1000]))):
                    events[e.certificate_id].append(e)
            for c in certs:
                intervals[c.institution_id].extend(valid_intervals(c, events[c.id]))
        out: dict[str, set[int]] = {}
        for q in quarters:
            lo, hi = q.first_day, q.last_day
            out[str(q)] = {iid for iid, spans in intervals.items() if any(s <= hi and e >= lo for s, e in spans)}
        return out

    @staticmethod
    def _batch_stats(session: Session, ids: list[int], quarters: list[Quarter]) -> dict[tuple[int, str], dict]:
        names = [str(q) for q in quarters]
        out: dict[tuple[int, str], dict] = {}
        on_time = func.sum(case((Batch.late.is_(False), 1), else_=0))
        zero = func.sum(case((Batch.source == "zero", 1), else_=0))
        zero_on_time = func.sum(case((and_(Batch.source == "zero", Batch.late.is_(False)), 1), else_=0))
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            stmt = (
                select(Batch.institution_id, Batch.quarter, func.count(), on_time, zero, zero_on_time,
                       func.coalesce(func.sum(Batch.accepted), 0), func.min(Batch.created_at))
                .where(Batch.institution_id.in_(chunk), Batch.quarter.in_(names))
                .group_by(Batch.institution_id, Batch.quarter)
            )
            for iid, q, n, ot, z, zot, numbers, first in session.execute(stmt):
                out[(iid, q)] = {"batches": n, "on_time": int(ot or 0), "zero": int(z or 0),
                                 "zero_on_time": int(zot or 0), "numbers": int(numbers or 0), "first": first}
        return out


_NO_BATCHES = {"batches": 0, "on_time": 0, "zero": 0, "zero_on_time": 0, "numbers": 0, "first": None}

__all__ = [
    "ComplianceRow", "ComplianceService", "InstitutionTimeline", "Lead", "QuarterSummary", "STANDINGS",
    "TimelineEntry", "standing", "valid_intervals",
]

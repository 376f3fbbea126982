"""Regulators' casework on complaints: the queue, the trail, and the actions on it.

Flask-free. Every action appends one event (actor, time, note) to the complaint's append-only
trail, which :mod:`registry.complaints.audit` seals. Jurisdiction: SAMR (authority ``00``) handles
everything; any other authority handles the complaints routed to it and sees the institutions
whose review authority it is. Complainants' personal data is shown only to the handling
authority and SAMR, and every view of it is itself an event of the trail.

States: ``received`` → ``accepted`` | ``rejected``; ``accepted`` → ``concluded``. A transfer
moves a received complaint to another authority (its decision clock restarts there); a question
to the complainant can be asked while it is received or accepted and is answered on the public
status page.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from registry.complaints.service import (
    CATEGORIES,
    StoredAttachment,
    complaint_reference,
    hash_tracking_code,
    normalize_tracking_code,
    parse_reference,
)
from registry.complaints.models import Complaint, ComplaintEvent, ComplaintFinding
from registry.institutions.models import Authority, Institution
from registry.registration.models import Batch
from registry.verification.models import QueryLog
from registry.numbers.normalize import InvalidValue, normalize_number
from registry.numbers.quarters import Clock, Quarter, SHANGHAI, system_clock
from registry.complaints.workdays import Deadline, WorkdayCalendar, deadline_for

NATIONAL = "00"
FINDINGS = ("forged", "not_registered", "misreported", "unfounded")
OPEN_STATUSES = ("received", "accepted")
MAX_NOTE = 4000
_ANSWER_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".pdf": "application/pdf"}
# events the public status page lists (with their kind only); the rest stay internal
PUBLIC_KINDS = {"accepted", "rejected", "transferred", "info_requested", "info_provided", "extended", "concluded"}


class NotAllowed(PermissionError):
    """Outside the officer's jurisdiction."""


class InvalidAction(ValueError):
    """The action does not fit the complaint's state, or a required reason is missing."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code  # wrong_state | reason_required | unknown_finding | unknown_authority | already_extended | no_question


@dataclass(frozen=True)
class Officer:
    """The acting regulator: an account bound to one authority."""

    username: str
    authority_id: int
    authority_code: str

    @property
    def national(self) -> bool:
        return self.authority_code == NATIONAL

    @property
    def actor(self) -> str:
        return f"{self.username} ({self.authority_code})"[:100]

    def handles(self, complaint: Complaint) -> bool:
        return self.national or complaint.authority_id == self.authority_id

    def oversees(self, institution: Institution) -> bool:
        return self.national or institution.review_authority_id == self.authority_id


@dataclass(frozen=True)
class QueueFilters:
    status: str = "open"  # open | all | one of STATUSES
    overdue: bool = False
    institution_id: int | None = None
    quarter: str | None = None  # the quarter the complaint was received in
    category: str | None = None
    search: str | None = None  # a report number, a complaint reference or a tracking code


@dataclass(frozen=True)
class QueueItem:
    id: int
    reference: str  # TS-<year>-<id>; the tracking code is the complainant's secret, never shown here
    number: str
    institution_name: str | None
    institution_text: str | None
    authority_code: str
    category: str
    status: str
    verdict_status: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deadline: Deadline
    open_question: bool
    age_workdays: int


@dataclass(frozen=True)
class QueryStats:
    count: int
    first: dt.datetime | None
    last: dt.datetime | None
    clients: int
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Trail:
    complaint: Complaint
    institution: Institution | None
    events: list[ComplaintEvent]
    deadline: Deadline
    queries: QueryStats
    batches: list[Batch]
    batch_quarters: list[str]
    finding: ComplaintFinding | None
    open_question: ComplaintEvent | None
    can_see_personal_data: bool
    transfer_targets: list[Authority]


@dataclass(frozen=True)
class PersonalData:
    name: str | None
    contact: str | None
    has_attachment: bool


@dataclass(frozen=True)
class PublicQuestion:
    asked_at: dt.datetime
    question: str


def received_quarter(complaint: Complaint) -> str:
    return str(Quarter.containing(complaint.created_at.astimezone(SHANGHAI).date()))


class CaseworkService:
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock,
                 files_dir: Path | None = None) -> None:
        self._sessions = sessions
        self._clock = clock
        self._files_dir = files_dir

    def today(self) -> dt.date:
        return self._clock().astimezone(SHANGHAI).date()

    # --- reading ------------------------------------------------------------------------------
    def queue(self, officer: Officer, filters: QueueFilters = QueueFilters()) -> list[QueueItem]:
        """The complaints in the officer's jurisdiction that match, most urgent deadline first."""
        with self._sessions() as session:
            stmt = select(Complaint, Institution.name).outerjoin(Institution, Institution.id == Complaint.institution_id)
            if not officer.national:
                stmt = stmt.where(Complaint.authority_id == officer.authority_id)
            if filters.status == "open" or filters.overdue:
                stmt = stmt.where(Complaint.status.in_(OPEN_STATUSES))
            if filters.status not in ("open", "all"):
                stmt = stmt.where(Complaint.status == filters.status)
            if filters.institution_id:
                stmt = stmt.where(Complaint.institution_id == filters.institution_id)
            if filters.category in CATEGORIES:
                stmt = stmt.where(Complaint.category == filters.category)
            if filters.quarter:
                q = Quarter.parse(filters.quarter)
                start = dt.datetime.combine(q.first_day, dt.time(), tzinfo=SHANGHAI)
                end = dt.datetime.combine(q.next().first_day, dt.time(), tzinfo=SHANGHAI)
                stmt = stmt.where(Complaint.created_at >= start, Complaint.created_at < end)
            if filters.search:
                stmt = stmt.where(_search_clause(filters.search))
            rows = session.execute(stmt.order_by(Complaint.id)).all()
            facts = _clock_facts(session, [c.id for c, _ in rows])
            calendar = WorkdayCalendar.from_session(session)
        today = self.today()
        items = []
        for complaint, inst_name in rows:
            f = facts.get(complaint.id, _Facts())
            deadline = deadline_for(calendar, status=complaint.status, received=f.received or complaint.created_at,
                                    accepted=f.accepted, extended=f.extended, today=today)
            if filters.overdue and not deadline.overdue:
                continue
            items.append(QueueItem(
                id=complaint.id, reference=complaint_reference(complaint.id, complaint.created_at), number=complaint.number,
                institution_name=inst_name, institution_text=complaint.institution_text,
                authority_code=complaint.authority.code, category=complaint.category, status=complaint.status,
                verdict_status=complaint.verdict_status, created_at=complaint.created_at,
                updated_at=complaint.updated_at, deadline=deadline, open_question=f.open_question,
                age_workdays=calendar.workdays_between(complaint.created_at.astimezone(SHANGHAI).date(), today),
            ))
        far = dt.date.max
        items.sort(key=lambda i: (i.deadline.due is None, i.deadline.due or far, i.created_at))
        return items

    def deadline_counts(self, *, within_workdays: int = 2) -> tuple[int, int]:
        """Open complaints everywhere whose deadline is at most ``within_workdays`` working days
        away (due, not yet overdue), and those past it (overdue) — for /metrics."""
        with self._sessions() as session:
            rows = session.execute(select(Complaint.id, Complaint.status, Complaint.created_at)
                                   .where(Complaint.status.in_(OPEN_STATUSES))).all()
            facts = _clock_facts(session, [r.id for r in rows])
            calendar = WorkdayCalendar.from_session(session)
        today, due, overdue = self.today(), 0, 0
        for cid, status, created_at in rows:
            f = facts.get(cid, _Facts())
            deadline = deadline_for(calendar, status=status, received=f.received or created_at,
                                    accepted=f.accepted, extended=f.extended, today=today)
            if deadline.overdue:
                overdue += 1
            elif deadline.workdays_left is not None and deadline.workdays_left <= within_workdays:
                due += 1
        return due, overdue

    def trail(self, officer: Officer, complaint_id: int) -> Trail:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id)
            institution = session.get(Institution, complaint.institution_id) if complaint.institution_id else None
            events = list(session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == complaint.id)
                                          .order_by(ComplaintEvent.id)))
            f = _facts_from(events)
            calendar = WorkdayCalendar.from_session(session)
            deadline = deadline_for(calendar, status=complaint.status, received=f.received or complaint.created_at,
                                    accepted=f.accepted, extended=f.extended, today=self.today())
            quarters = self._quarters_concerned(complaint)
            batches = []
            if institution is not None:
                batches = list(session.scalars(
                    select(Batch).where(Batch.institution_id == institution.id, Batch.quarter.in_(quarters))
                    .order_by(Batch.quarter, Batch.created_at)))
            targets = list(session.scalars(select(Authority).where(Authority.id != complaint.authority_id)
                                           .order_by(Authority.code)))
            trail = Trail(
                complaint=complaint, institution=institution, events=events, deadline=deadline,
                queries=query_stats(session, complaint.number), batches=batches, batch_quarters=quarters,
                finding=session.get(ComplaintFinding, complaint.id),
                open_question=f.question_event if f.open_question else None,
                can_see_personal_data=officer.handles(complaint), transfer_targets=targets,
            )
            session.expunge_all()
            return trail

    @staticmethod
    def _quarters_concerned(complaint: Complaint) -> list[str]:
        """The quarter the number was registered in, else the quarter of receipt and the one before."""
        quarter = (complaint.verdict_json or {}).get("quarter")
        if quarter:
            return [quarter]
        q = Quarter.parse(received_quarter(complaint))
        return [str(q.previous()), str(q)]

    # --- personal data and attachments (each view is an event) --------------------------------
    def personal_data(self, officer: Officer, complaint_id: int) -> PersonalData:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id)
            self._append(session, complaint, "personal_data_viewed", officer, note="name, contact")
            session.commit()
            return PersonalData(name=complaint.complainant_name, contact=complaint.complainant_contact,
                                has_attachment=bool(complaint.attachment_path))

    def attachment(self, officer: Officer, complaint_id: int, event_id: int | None = None) -> tuple[Path, str]:
        """The attachment's absolute path and content type — the complaint's own, or the one sent
        with an answer (its ``attachment_added`` event); logs the download first."""
        if self._files_dir is None:
            raise LookupError("no files directory configured")
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id)
            if event_id is None:
                stored, content_type = complaint.attachment_path, complaint.attachment_type
            else:
                event = session.get(ComplaintEvent, event_id)
                if event is None or event.complaint_id != complaint.id or event.kind != "attachment_added":
                    raise LookupError("no such attachment")
                stored = event.note
                content_type = _ANSWER_TYPES.get(Path(stored or "").suffix)
            if not stored:
                raise LookupError("this complaint has no attachment")
            root = self._files_dir.resolve()
            path = (root / stored).resolve()
            if root not in path.parents or not path.is_file():
                raise LookupError("the attachment file is missing")
            self._append(session, complaint, "attachment_viewed", officer, note=stored)
            session.commit()
            return path, content_type or "application/octet-stream"

    # --- actions ------------------------------------------------------------------------------
    def accept(self, officer: Officer, complaint_id: int, note: str = "") -> None:
        self._transition(officer, complaint_id, "accepted", frm=("received",), kind="accepted", note=note)

    def reject(self, officer: Officer, complaint_id: int, reason: str) -> None:
        self._transition(officer, complaint_id, "rejected", frm=("received",), kind="rejected", note=reason,
                         reason_required=True)

    def extend(self, officer: Officer, complaint_id: int, reason: str) -> None:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id, lock=True)
            reason = _clean(reason, required=True)
            if complaint.status != "accepted":
                raise InvalidAction("wrong_state")
            if session.scalar(select(func.count()).where(ComplaintEvent.complaint_id == complaint.id,
                                                         ComplaintEvent.kind == "extended")):
                raise InvalidAction("already_extended")
            self._append(session, complaint, "extended", officer, note=reason, public=True)
            session.commit()

    def conclude(self, officer: Officer, complaint_id: int, finding: str, note: str) -> None:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id, lock=True)
            if finding not in FINDINGS:
                raise InvalidAction("unknown_finding")
            note = _clean(note, required=True)
            if complaint.status != "accepted":
                raise InvalidAction("wrong_state")
            now = self._clock()
            complaint.status, complaint.updated_at = "concluded", now
            session.add(ComplaintFinding(complaint_id=complaint.id, finding=finding, concluded_at=now,
                                         concluded_by=officer.actor))
            self._append(session, complaint, "concluded", officer, note=f"[{finding}] {note}", public=True, at=now)
            session.commit()

    def transfer(self, officer: Officer, complaint_id: int, authority_code: str, reason: str) -> None:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id, lock=True)
            reason = _clean(reason, required=True)
            if complaint.status != "received":
                raise InvalidAction("wrong_state")
            target = session.scalar(select(Authority).where(Authority.code == (authority_code or "").strip()))
            if target is None or target.id == complaint.authority_id:
                raise InvalidAction("unknown_authority")
            now = self._clock()
            self._append(session, complaint, "transferred", officer, public=True, at=now,
                         note=f"→ {target.code} {target.name}: {reason}")
            complaint.authority_id, complaint.updated_at = target.id, now
            session.commit()

    def request_info(self, officer: Officer, complaint_id: int, question: str) -> None:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id, lock=True)
            question = _clean(question, required=True)
            if complaint.status not in OPEN_STATUSES:
                raise InvalidAction("wrong_state")
            now = self._clock()
            self._append(session, complaint, "info_requested", officer, note=question, public=True, at=now)
            complaint.updated_at = now
            session.commit()

    def add_note(self, officer: Officer, complaint_id: int, note: str) -> None:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id)
            self._append(session, complaint, "note", officer, note=_clean(note, required=True))
            session.commit()

    # --- the complainant's side (public status page) ------------------------------------------
    def open_question(self, tracking_code: str) -> PublicQuestion | None:
        """The question the handling authority is waiting for an answer to, if any."""
        code = normalize_tracking_code(tracking_code)
        if code is None:
            return None
        with self._sessions() as session:
            complaint = session.scalar(select(Complaint).where(Complaint.tracking_hash == hash_tracking_code(code)))
            if complaint is None or complaint.status not in OPEN_STATUSES:
                return None
            events = session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == complaint.id)
                                     .order_by(ComplaintEvent.id)).all()
            f = _facts_from(events)
            if not f.open_question or f.question_event is None:
                return None
            return PublicQuestion(asked_at=f.question_event.at, question=f.question_event.note or "")

    def public_finding(self, tracking_code: str) -> str | None:
        """The finding of a concluded complaint (a code of FINDINGS), for its public status page."""
        code = normalize_tracking_code(tracking_code)
        if code is None:
            return None
        with self._sessions() as session:
            return session.scalar(select(ComplaintFinding.finding).join(Complaint, Complaint.id == ComplaintFinding.complaint_id)
                                  .where(Complaint.tracking_hash == hash_tracking_code(code)))

    def public_deadline(self, tracking_code: str) -> Deadline | None:
        """The running deadline of a complaint, for its public status page ("what happens next")."""
        code = normalize_tracking_code(tracking_code)
        if code is None:
            return None
        with self._sessions() as session:
            complaint = session.scalar(select(Complaint).where(Complaint.tracking_hash == hash_tracking_code(code)))
            if complaint is None:
                return None
            f = _clock_facts(session, [complaint.id]).get(complaint.id, _Facts())
            calendar = WorkdayCalendar.from_session(session)
            return deadline_for(calendar, status=complaint.status, received=f.received or complaint.created_at,
                                accepted=f.accepted, extended=f.extended, today=self.today())

    def answer(self, tracking_code: str, text: str, attachment: StoredAttachment | None = None) -> None:
        """Record the complainant's answer to the open question (the text is internal); an
        attachment sent with it is an internal ``attachment_added`` event naming the stored file."""
        code = normalize_tracking_code(tracking_code)
        with self._sessions() as session:
            complaint = (session.scalar(select(Complaint).where(Complaint.tracking_hash == hash_tracking_code(code)))
                         if code else None)
            if complaint is None:
                raise LookupError("no such complaint")
            text = _clean(text, required=True)
            events = session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == complaint.id)
                                     .order_by(ComplaintEvent.id)).all()
            if complaint.status not in OPEN_STATUSES or not _facts_from(events).open_question:
                raise InvalidAction("no_question")
            now = self._clock()
            session.add(ComplaintEvent(complaint_id=complaint.id, at=now, kind="info_provided", actor="public",
                                       public=True, note=text))
            if attachment is not None:
                session.add(ComplaintEvent(complaint_id=complaint.id, at=now, kind="attachment_added", actor="public",
                                           public=False, note=attachment.path))
            complaint.updated_at = now
            session.commit()

    # --- helpers ------------------------------------------------------------------------------
    def _get(self, session: Session, officer: Officer, complaint_id: int, *, lock: bool = False) -> Complaint:
        stmt = select(Complaint).where(Complaint.id == complaint_id)
        if lock:
            stmt = stmt.with_for_update(of=Complaint)
        complaint = session.scalar(stmt)
        if complaint is None:
            raise LookupError("no such complaint")
        if not officer.handles(complaint):
            raise NotAllowed("outside this authority's jurisdiction")
        return complaint

    def _append(self, session: Session, complaint: Complaint, kind: str, officer: Officer, *,
                note: str | None = None, public: bool = False, at: dt.datetime | None = None) -> None:
        session.add(ComplaintEvent(complaint_id=complaint.id, at=at or self._clock(), kind=kind,
                                   actor=officer.actor, public=public, note=note))

    def _transition(self, officer: Officer, complaint_id: int, status: str, *, frm: tuple[str, ...], kind: str,
                    note: str, reason_required: bool = False) -> None:
        with self._sessions() as session:
            complaint = self._get(session, officer, complaint_id, lock=True)
            note = _clean(note, required=reason_required)
            if complaint.status not in frm:
                raise InvalidAction("wrong_state")
            now = self._clock()
            complaint.status, complaint.updated_at = status, now
            self._append(session, complaint, kind, officer, note=note or None, public=True, at=now)
            session.commit()


def _clean(text: str | None, *, required: bool) -> str:
    text = (text or "").replace("\r\n", "\n").strip()[:MAX_NOTE]
    if required and not text:
        raise InvalidAction("reason_required")
    return text


def _search_clause(text: str):
    text = text.strip()
    clauses = []
    code = normalize_tracking_code(text)
    if code:  # an officer holding a code a complainant gave them
        clauses.append(Complaint.tracking_hash == hash_tracking_code(code))
    reference = parse_reference(text)
    if reference:
        year, complaint_id = reference
        start = dt.datetime(year, 1, 1, tzinfo=SHANGHAI)
        end = dt.datetime(year + 1, 1, 1, tzinfo=SHANGHAI) if year < 9999 else dt.datetime.max.replace(tzinfo=SHANGHAI)
        if complaint_id < 2**31:
            clauses.append((Complaint.id == complaint_id) & (Complaint.created_at >= start) & (Complaint.created_at < end))
    try:
        clauses.append(Complaint.number == normalize_number(text))
    except InvalidValue:
        pass
    return or_(*clauses) if clauses else Complaint.id.is_(None)


@dataclass
class _Facts:
    received: dt.datetime | None = None  # when the current authority received it (transfer restarts)
    accepted: dt.datetime | None = None
    extended: bool = False
    open_question: bool = False
    question_event: ComplaintEvent | None = None


def _facts_from(events) -> _Facts:
    f = _Facts()
    for e in events:
        if e.kind == "transferred":
            f.received = e.at
        elif e.kind == "accepted":
            f.accepted = e.at
        elif e.kind == "extended":
            f.extended = True
        elif e.kind == "info_requested":
            f.open_question, f.question_event = True, e
        elif e.kind == "info_provided":
            f.open_question = False
    return f


def _clock_facts(session: Session, ids: list[int]) -> dict[int, _Facts]:
    out: dict[int, list] = {}
    kinds = ("transferred", "accepted", "extended", "info_requested", "info_provided")
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for e in session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id.in_(chunk),
                                                              ComplaintEvent.kind.in_(kinds))
                                 .order_by(ComplaintEvent.id)):
            out.setdefault(e.complaint_id, []).append(e)
    return {cid: _facts_from(evs) for cid, evs in out.items()}


def query_stats(session: Session, number: str) -> QueryStats:
    """How often, when and by how many distinct clients a number was verified (query_log)."""
    row = session.execute(select(func.count(), func.min(QueryLog.at), func.max(QueryLog.at),
                                 func.count(func.distinct(QueryLog.client))).where(QueryLog.number == number)).one()
    by_status = dict(session.execute(select(QueryLog.status, func.count()).where(QueryLog.number == number)
                                     .group_by(QueryLog.status)).all())
    return QueryStats(count=row[0], first=row[1], last=row[2], clients=row[3], by_status=by_status)


def institutions_in(session: Session, officer: Officer):
    """A select of the institutions in the officer's jurisdiction."""
    stmt = select(Institution)
    if not officer.national:
        stmt = stmt.where(Institution.review_authority_id == officer.authority_id)
    return stmt


__all__ = [
    "CaseworkService", "FINDINGS", "InvalidAction", "NotAllowed", "Officer", "PersonalData", "PublicQuestion",
    "QueryStats", "QueueFilters", "QueueItem", "Trail", "institutions_in", "query_stats", "received_quarter",
]

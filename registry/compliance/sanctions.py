"""Measures against an institution for its reporting duties (未按要求及时上报、瞒报、错报、漏报),
with the institution heard.

Flask-free. An officer whose jurisdiction covers the institution proposes a measure (warning,
public notice, refusal of new certification applications, abnormal listing) on a ground; the
institution sees it in its portal and may state its case (陈述申辩) within ``hearing_days`` working
days (registry/complaints/workdays.py); then a second officer — not the proposer — confirms or
drops it with a reason, once the institution has stated its case or the period is over. A
confirmed abnormal listing sets the institution's abnormal flag through
:class:`registry.compliance.abnormal.AbnormalService` (so the verify JSON's ``abnormal`` key means
what it always meant); lifting a measure is recorded the same way. Every step is one entry of the
sealed admin log, whose detail carries a digest of the measure after it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.complaints.casework import InvalidAction, NotAllowed, Officer
from registry.complaints.workdays import WorkdayCalendar, local_day
from registry.compliance.abnormal import AbnormalService
from registry.compliance.models import Sanction
from registry.institutions.directory import bump_directory_version
from registry.institutions.models import Institution
from registry.numbers.quarters import Clock, system_clock

MEASURES = ("warning", "public_notice", "refuse_applications", "abnormal")
PUBLIC_MEASURES = ("public_notice", "abnormal")  # shown on the public verdict page once confirmed
GROUNDS = ("late_filing", "missing_filing", "false_filing", "missing_uploads", "late_uploads")
DEFAULT_HEARING_DAYS = 5
MAX_TEXT = 2000


def sanction_state(s: Sanction) -> str:
    payload = json.dumps([s.institution_id, s.measure, s.ground, s.year, s.reason, s.status, s.statement or "",
                          s.decision or "", s.lift_reason or ""], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


class SanctionService:
    def __init__(self, *, sessions: sessionmaker[Session], admin_log, abnormal: AbnormalService,
                 clock: Clock = system_clock, hearing_days: int = DEFAULT_HEARING_DAYS) -> None:
        self._sessions = sessions
        self._log = admin_log
        self._abnormal = abnormal
        self._clock = clock
        self.hearing_days = hearing_days

    def _seal(self, session: Session, s: Sanction, actor: str, action: str, note: str = "") -> None:
        detail = json.dumps({"institution": s.institution_id, "measure": s.measure, "status": s.status,
                             "note": note, "state": sanction_state(s)}, ensure_ascii=False, sort_keys=True)
        self._log.record(session, actor=actor, action=action, target=f"sanction:{s.id}", detail=detail)

    @staticmethod
    def _text(text: str | None) -> str:
        return (text or "").replace("\r\n", "\n").strip()[:MAX_TEXT]

    def _officers(self, session: Session, officer: Officer, sanction_id: int) -> Sanction:
        s = session.get(Sanction, sanction_id)
        if s is None:
            raise LookupError(sanction_id)
        inst = session.get(Institution, s.institution_id)
        if not (officer.national or officer.oversees(inst) or s.authority_id == officer.authority_id):
            raise NotAllowed(sanction_id)
        return s

    def propose(self, officer: Officer, institution_id: int, *, measure: str, ground: str, reason: str,
                year: int | None = None) -> Sanction:
        reason = self._text(reason)
        if measure not in MEASURES or ground not in GROUNDS:
            raise InvalidAction("unknown_measure")
        if not reason:
            raise InvalidAction("reason_required")
        with self._sessions() as session:
            inst = session.get(Institution, institution_id)
            if inst is None:
                raise LookupError(institution_id)
            if not officer.oversees(inst):
                raise NotAllowed(institution_id)
            now = self._clock()
            due = WorkdayCalendar.from_session(session).add_workdays(local_day(now), self.hearing_days)
            s = Sanction(institution_id=inst.id, authority_id=officer.authority_id, measure=measure, ground=ground,
                         year=year, reason=reason, status="proposed", proposed_by=officer.actor, proposed_at=now,
                         hearing_due=due)
            session.add(s)
            session.flush()
            self._seal(session, s, officer.actor, "sanction_proposed", reason)
            session.commit()
            session.expunge(s)
            return s

    def state_case(self, institution_id: int, sanction_id: int, statement: str, *, actor: str) -> None:
        """The institution's 陈述申辩, once, within the hearing period."""
        statement = self._text(statement)
        with self._sessions() as session:
            s = session.get(Sanction, sanction_id)
            if s is None or s.institution_id != institution_id:
                raise LookupError(sanction_id)
            if not statement:
                raise InvalidAction("reason_required")
            if s.status != "proposed" or s.statement or local_day(self._clock()) > s.hearing_due:
                raise InvalidAction("wrong_state")
            s.statement, s.stated_at = statement, self._clock()
            self._seal(session, s, actor, "sanction_case_stated")
            session.commit()

    def decide(self, officer: Officer, sanction_id: int, *, confirm: bool, reason: str) -> None:
        """A second officer confirms or drops a proposed measure, after the institution was heard."""
        reason = self._text(reason)
        if not reason:
            raise InvalidAction("reason_required")
        with self._sessions() as session:
            s = self._officers(session, officer, sanction_id)
            if s.status != "proposed":
                raise InvalidAction("wrong_state")
            if s.proposed_by == officer.actor:
                raise InvalidAction("second_officer")
            if not s.statement and local_day(self._clock()) <= s.hearing_due:
                raise InvalidAction("hearing_open")
            s.status = "confirmed" if confirm else "dropped"
            s.decided_by, s.decided_at, s.decision = officer.actor, self._clock(), reason
            self._seal(session, s, officer.actor, f"sanction_{s.status}", reason)
            if confirm and s.measure in PUBLIC_MEASURES:
                bump_directory_version(session)  # the public verdict page shows it
            session.commit()
            listing = confirm and s.measure == "abnormal"
            inst_id = s.institution_id
        if listing:
            try:
                self._abnormal.mark(officer, inst_id, reason)
            except InvalidAction:  # already listed: the measure stands on the existing listing
                pass

    def lift(self, officer: Officer, sanction_id: int, reason: str) -> None:
        reason = self._text(reason)
        if not reason:
            raise InvalidAction("reason_required")
        with self._sessions() as session:
            s = self._officers(session, officer, sanction_id)
            if s.status != "confirmed":
                raise InvalidAction("wrong_state")
            s.status, s.lifted_by, s.lifted_at, s.lift_reason = "lifted", officer.actor, self._clock(), reason
            self._seal(session, s, officer.actor, "sanction_lifted", reason)
            if s.measure in PUBLIC_MEASURES:
                bump_directory_version(session)
            session.commit()
            unlist = s.measure == "abnormal"
            inst_id = s.institution_id
        if unlist:
            try:
                self._abnormal.unmark(officer, inst_id, reason)
            except InvalidAction:
                pass

    # --- lists --------------------------------------------------------------------------------
    def listed(self, officer: Officer) -> list[Sanction]:
        """The measures of the officer's jurisdiction, newest first."""
        with self._sessions() as session:
            rows = list(session.scalars(select(Sanction).order_by(Sanction.id.desc()).limit(500)))
            insts = {i.id: i for i in session.scalars(
                select(Institution).where(Institution.id.in_({r.institution_id for r in rows})))}
            seen = [r for r in rows if officer.national or officer.oversees(insts[r.institution_id])
                    or r.authority_id == officer.authority_id]
            for r in seen:
                r.institution_name = insts[r.institution_id].name
            session.expunge_all()
            return seen

    def get(self, officer: Officer, sanction_id: int) -> Sanction:
        with self._sessions() as session:
            s = self._officers(session, officer, sanction_id)
            s.institution_name = session.get(Institution, s.institution_id).name
            session.expunge(s)
            return s

    def for_institution(self, institution_id: int) -> list[Sanction]:
        with self._sessions() as session:
            rows = list(session.scalars(select(Sanction).where(Sanction.institution_id == institution_id)
                                        .order_by(Sanction.id.desc())))
            session.expunge_all()
            return rows

    def today(self) -> dt.date:
        return local_day(self._clock())

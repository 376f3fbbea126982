"""Who is told what by e-mail, and when (issue 18). Messages are rendered by the Notifier
(workflows/notify.py) and sent from the outbox by background jobs.

- The complainant (only when the contact given is an e-mail address): the receipt with the
  tracking code (:meth:`Notices.complaint_received`, rendered in the request that made the code:
  the code is stored nowhere else but hashed), then each public change of the complaint and its
  conclusion (from the trail's public events).
- Officers of the handling authority: a new complaint in their queue; a complaint two working
  days before its deadline, and on the day it is overdue; one daily digest instead of these when
  there are more than DIGEST_OVER for one officer in a run.
- Institutions (every active account of the institution with a verified address): a receipt for
  each batch, an alert on each new API token and on withdrawals; once a day, the upload window
  opening (first working day of a quarter), a reminder five working days before it closes to
  institutions with no upload for last quarter, and an alert when public queries named the
  institution with numbers not registered (its name claimed for reports it never registered):
  the numbers, how often and when — never who asked; and, when an operator runs ``statistics
  remind YEAR``, a reminder to file the annual statistics (once a day at most).

:meth:`Notices.sweep` (every minute) follows the trail, batches, withdrawals and tokens past a
high-water mark kept in ``registry_state``; :meth:`Notices.daily` runs the dated ones. Every
message of a sweep carries a dedupe key (unique in the outbox), so two processes sweeping at
once, or a day run twice, send nothing twice.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.models import Account, ApiToken
from registry.complaints.casework import CaseworkService, Officer, QueueFilters
from registry.complaints.models import Complaint, ComplaintEvent
from registry.complaints.service import format_tracking_code, hash_tracking_code
from registry.complaints.workdays import WorkdayCalendar, local_day
from registry.infra.base import RegistryState
from registry.institutions.models import Authority, Institution
from registry.numbers.quarters import Clock, Quarter
from registry.registration.models import Batch, NumberEvent
from registry.verification.models import QueryLog

from .notify import Notifier

log = logging.getLogger(__name__)

DIGEST_OVER = 5  # more deadline notices than this for one officer in a day: one digest instead
CLAIMS_THRESHOLD = 3  # not-found queries naming an institution in a day before it is alerted
WINDOW_REMINDER_WORKDAYS = 5
# the public events the complainant is told of, with their words
COMPLAINANT_EVENTS = {
    "accepted": ("已受理", "accepted"),
    "rejected": ("不予受理", "not accepted"),
    "transferred": ("已转交其他监管部门", "transferred to another authority"),
    "info_requested": ("监管部门请您补充信息", "the authority asks you for more information"),
    "extended": ("办理期限已延长", "the time for handling it was extended"),
    "concluded": ("已办结", "concluded"),
}
MARKS = {"events": "notices_event_id", "batches": "notices_batch_id", "withdrawals": "notices_number_event_id",
         "tokens": "notices_token_id"}


def is_email(contact: str | None) -> bool:
    return bool(contact) and "@" in contact and " " not in contact.strip()


class Notices:
    def __init__(self, *, sessions: sessionmaker[Session], notifier: Notifier, casework: CaseworkService,
                 clock: Clock) -> None:
        self._sessions = sessions
        self._notifier = notifier
        self._casework = casework
        self._clock = clock

    # --- the complainant ---------------------------------------------------------------------
    def complaint_received(self, tracking_code: str) -> None:
        """Right after a complaint is stored: its receipt, with the tracking code (encrypted in
        the outbox until sent), to the complainant's address if one was given."""
        with self._sessions() as session:
            complaint = session.scalar(select(Complaint).where(Complaint.tracking_hash == hash_tracking_code(tracking_code)))
            if complaint is None or not is_email(complaint.complainant_contact):
                return
            authority = complaint.authority
            self._notifier.send("complaint_received", complaint.complainant_contact.strip(), secret=True,
                                dedupe=f"complaint:{complaint.id}:received", number=complaint.number,
                                code=format_tracking_code(tracking_code), authority=authority.name,
                                authority_en=authority.name_en, link=self._notifier.link("/complaints/track"))

    # --- the sweep -----------------------------------------------------------------------------
    def sweep(self) -> None:
        """Everything that happened since the last sweep (each part on its own: one failing does
        not stop the others)."""
        for part in (self._complaint_events, self._batches, self._withdrawals, self._tokens):
            try:
                part()
            except Exception:  # noqa: BLE001 - logged; the mark did not move, the next sweep retries
                log.exception("notices: %s failed", part.__name__)

    def _since(self, mark: str, model, limit: int = 500):
        with self._sessions() as session:
            last = session.scalar(select(RegistryState.value).where(RegistryState.key == MARKS[mark]))
            if last is None:  # first run: start from now, never tell the whole history
                last = session.scalar(select(func.max(model.id))) or 0
                self._set_mark(session, mark, last)
                return []
            rows = list(session.scalars(select(model).where(model.id > last).order_by(model.id).limit(limit)))
            for row in rows:
                session.expunge(row)
            return rows

    def _advance(self, mark: str, value: int) -> None:
        with self._sessions() as session:
            self._set_mark(session, mark, value)

    @staticmethod
    def _set_mark(session: Session, mark: str, value: int) -> None:
        row = session.get(RegistryState, MARKS[mark])
        if row is None:
            session.add(RegistryState(key=MARKS[mark], value=value))
        elif row.value < value:
            row.value = value
        session.commit()

    def _complaint_events(self) -> None:
        events = self._since("events", ComplaintEvent)
        if not events:
            return
        with self._sessions() as session:
            for event in events:
                if not event.public:
                    continue
                complaint = session.get(Complaint, event.complaint_id)
                if event.kind == "routed" or event.kind == "transferred":
                    self._tell_officers_new(session, complaint, event)
                if event.kind in COMPLAINANT_EVENTS and is_email(complaint.complainant_contact):
                    zh, en = COMPLAINANT_EVENTS[event.kind]
                    self._notifier.send(
                        "complaint_concluded" if event.kind == "concluded" else "complaint_status",
                        complaint.complainant_contact.strip(), secret=True, dedupe=f"event:{event.id}",
                        number=complaint.number, status_zh=zh, status_en=en, authority=complaint.authority.name,
                        authority_en=complaint.authority.name_en, link=self._notifier.link("/complaints/track"))
        self._advance("events", events[-1].id)

    def _tell_officers_new(self, session: Session, complaint: Complaint, event: ComplaintEvent) -> None:
        for account in self._officers(session, complaint.authority_id):
            self._notifier.send("officer_new_complaint", account.verified_email, account_id=account.id,
                                dedupe=f"event:{event.id}:{account.id}", username=account.username,
                                number=complaint.number, reference=f"TS-{complaint.created_at.year}-{complaint.id}",
                                link=self._notifier.link(f"/regulator/complaints/{complaint.id}"))

    @staticmethod
    def _officers(session: Session, authority_id: int) -> list[Account]:
        return [a for a in session.scalars(select(Account).where(
            Account.role == "regulator", Account.authority_id == authority_id, Account.active.is_(True),
            Account.email_verified_at.is_not(None))) if a.verified_email]

    @staticmethod
    def _institution_accounts(session: Session, institution_id: int) -> list[Account]:
        return [a for a in session.scalars(select(Account).where(
            Account.role == "institution", Account.institution_id == institution_id, Account.active.is_(True),
            Account.email_verified_at.is_not(None))) if a.verified_email]

    def _batches(self) -> None:
        batches = self._since("batches", Batch)
        if not batches:
            return
        with self._sessions() as session:
            for batch in batches:
                institution = session.get(Institution, batch.institution_id)
                for account in self._institution_accounts(session, batch.institution_id):
                    self._notifier.send("batch_receipt", account.verified_email, account_id=account.id,
                                        dedupe=f"batch:{batch.id}:{account.id}", institution=institution.name,
                                        quarter=batch.quarter, accepted=batch.accepted, duplicates=batch.duplicates,
                                        rejected=batch.rejected, late=batch.late, batch_id=batch.id,
                                        link=self._notifier.link(f"/institution/batches/{batch.id}"))
        self._advance("batches", batches[-1].id)

    def _withdrawals(self) -> None:
        changes = self._since("withdrawals", NumberEvent, limit=5000)
        if not changes:
            return
        grouped: dict[tuple[int, str], list[NumberEvent]] = defaultdict(list)
        for change in changes:
            grouped[(change.institution_id, change.kind)].append(change)
        with self._sessions() as session:
            for (institution_id, kind), rows in grouped.items():
                institution = session.get(Institution, institution_id)
                for account in self._institution_accounts(session, institution_id):
                    self._notifier.send("numbers_changed", account.verified_email, account_id=account.id,
                                        dedupe=f"numbers:{rows[-1].id}:{kind}:{account.id}",
                                        institution=institution.name, withdrawn=kind == "withdrawn",
                                        count=len(rows), numbers=[r.number for r in rows[:20]],
                                        actor=rows[-1].actor or rows[-1].source)
        self._advance("withdrawals", changes[-1].id)

    def _tokens(self) -> None:
        tokens = self._since("tokens", ApiToken)
        if not tokens:
            return
        with self._sessions() as session:
            for token in tokens:
                institution = session.get(Institution, token.institution_id)
                for account in self._institution_accounts(session, token.institution_id):
                    self._notifier.send("token_created", account.verified_email, account_id=account.id,
                                        dedupe=f"token:{token.id}:{account.id}", institution=institution.name,
                                        name=token.name, prefix=token.prefix, by=token.created_by or "—",
                                        link=self._notifier.link("/institution/tokens"))
        self._advance("tokens", tokens[-1].id)

    # --- once a day --------------------------------------------------------------------------
    def daily(self) -> None:
        for part in (self.officer_deadlines, self.upload_window, self.name_claims):
            try:
                part()
            except Exception:  # noqa: BLE001
                log.exception("notices: %s failed", part.__name__)

    def officer_deadlines(self) -> None:
        """Two working days before a complaint's deadline, and on the day it is overdue; a
        digest instead when one officer would get more than DIGEST_OVER of these."""
        today = local_day(self._clock())
        with self._sessions() as session:
            officers = list(session.scalars(select(Account).where(
                Account.role == "regulator", Account.active.is_(True), Account.email_verified_at.is_not(None))))
            authorities = {a.id: a.code for a in session.scalars(select(Authority))}
        for account in officers:
            officer = Officer(username=account.username, authority_id=account.authority_id,
                              authority_code=authorities.get(account.authority_id, ""))
            due = []
            for item in self._casework.queue(officer, QueueFilters(status="open")):
                left = item.deadline.workdays_left
                if item.deadline.stage == "none" or left is None:
                    continue
                if left == 2:
                    due.append((item, "soon"))
                elif left < 0 and item.deadline.due is not None and self._first_overdue_day(item.deadline.due, today):
                    due.append((item, "overdue"))
            if not due:
                continue
            items = [{"reference": item.reference, "number": item.number, "due": item.deadline.due.isoformat(),
                      "overdue": what == "overdue",
                      "link": self._notifier.link(f"/regulator/complaints/{item.id}")} for item, what in due]
            if len(items) > DIGEST_OVER:
                self._notifier.send("officer_digest", account.verified_email, account_id=account.id,
                                    dedupe=f"digest:{today.isoformat()}:{account.id}", username=account.username,
                                    day=today.isoformat(), items=items)
                continue
            for entry in items:
                self._notifier.send("officer_deadline", account.verified_email, account_id=account.id,
                                    dedupe=f"deadline:{entry['reference']}:{entry['overdue']}:{account.id}",
                                    username=account.username, **entry)

    def _first_overdue_day(self, due: dt.date, today: dt.date) -> bool:
        """Today is the first working day past ``due``."""
        with self._sessions() as session:
            calendar = WorkdayCalendar.from_session(session)
        return calendar.add_workdays(due, 1) == today

    def upload_window(self) -> None:
        """On the first working day of a quarter, the upload window for the quarter just ended
        opens; five working days before it closes, a reminder to institutions with no upload."""
        today = local_day(self._clock())
        current = Quarter.containing(today)
        with self._sessions() as session:
            calendar = WorkdayCalendar.from_session(session)
            first = current.first_day
            while not calendar.is_workday(first):
                first += dt.timedelta(days=1)
            last_quarter = current.previous()
            closes = last_quarter.deadline  # the last day of the quarter's first month
            opening = today == first
            reminder = closes >= today and calendar.workdays_between(today, closes) == WINDOW_REMINDER_WORKDAYS
            if not (opening or reminder):
                return
            uploaded = set(session.scalars(select(Batch.institution_id).where(Batch.quarter == str(last_quarter))))
            accounts = list(session.scalars(select(Account).where(
                Account.role == "institution", Account.active.is_(True), Account.email_verified_at.is_not(None))))
        for account in accounts:
            if opening:
                self._notifier.send("window_open", account.verified_email, account_id=account.id,
                                    dedupe=f"window:{last_quarter}:open:{account.id}", quarter=str(last_quarter),
                                    closes=closes.isoformat(), link=self._notifier.link("/institution/upload"))
            elif account.institution_id not in uploaded:
                self._notifier.send("window_reminder", account.verified_email, account_id=account.id,
                                    dedupe=f"window:{last_quarter}:remind:{account.id}", quarter=str(last_quarter),
                                    closes=closes.isoformat(), link=self._notifier.link("/institution/upload"))

    def statistics_reminders(self, year: int, file_by: dt.date, rows) -> int:
        """``statistics remind YEAR``: an e-mail to every verified address of each institution in
        ``rows`` (the queue rows of those that have not filed), at most once a day each (the
        dedupe key carries the day). Returns how many messages were queued."""
        today = local_day(self._clock())
        statuses = {row.institution_id: row.status for row in rows}
        if not statuses:
            return 0
        with self._sessions() as session:
            accounts = list(session.scalars(select(Account).where(
                Account.role == "institution", Account.institution_id.in_(statuses), Account.active.is_(True),
                Account.email_verified_at.is_not(None))))
            names = dict(session.execute(select(Institution.id, Institution.name)
                                         .where(Institution.id.in_(statuses))).all())
        queued = 0
        for account in accounts:
            if not account.verified_email:
                continue
            queued += self._notifier.send(
                "statistics_reminder", account.verified_email, account_id=account.id,
                dedupe=f"statistics:{year}:remind:{today.isoformat()}:{account.id}", year=year,
                institution=names.get(account.institution_id, ""), file_by=file_by.isoformat(),
                overdue=today > file_by, started=statuses[account.institution_id] == "draft",
                link=self._notifier.link(f"/institution/statistics/{year}")) is not None
        return queued

    def name_claims(self, day: dt.date | None = None) -> None:
        """Yesterday's (or ``day``'s) public queries that named an institution with a number it
        never registered: above CLAIMS_THRESHOLD, the institution is told the numbers, how often
        and when each was asked — never by whom."""
        day = day or local_day(self._clock()) - dt.timedelta(days=1)
        start = dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone(dt.timedelta(hours=8)))
        end = start + dt.timedelta(days=1)
        with self._sessions() as session:
            rows = session.execute(
                select(QueryLog.institution_id, QueryLog.number, func.count(), func.min(QueryLog.at), func.max(QueryLog.at))
                .where(QueryLog.at >= start, QueryLog.at < end, QueryLog.status == "not_found",
                       QueryLog.institution_id.is_not(None))
                .group_by(QueryLog.institution_id, QueryLog.number)).all()
            claims: dict[int, list[dict]] = defaultdict(list)
            for institution_id, number, count, first, last in rows:
                claims[institution_id].append({"number": number, "count": int(count), "first": first, "last": last})
            for institution_id, numbers in claims.items():
                total = sum(n["count"] for n in numbers)
                if total < CLAIMS_THRESHOLD:
                    continue
                institution = session.get(Institution, institution_id)
                numbers.sort(key=lambda n: (-n["count"], n["number"]))
                shown = [{"number": n["number"], "count": n["count"],
                          "first": n["first"].astimezone(start.tzinfo).strftime("%H:%M"),
                          "last": n["last"].astimezone(start.tzinfo).strftime("%H:%M")} for n in numbers[:50]]
                for account in self._institution_accounts(session, institution_id):
                    self._notifier.send("name_claimed", account.verified_email, account_id=account.id,
                                        dedupe=f"claims:{day.isoformat()}:{institution_id}:{account.id}",
                                        institution=institution.name, day=day.isoformat(), total=total,
                                        distinct=len(numbers), numbers=shown, more=max(0, len(numbers) - 50))

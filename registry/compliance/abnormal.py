"""The abnormal list (异常检验检测机构): mark and unmark with a reason; the history is kept.

Every change bumps the institution directory's version in the same transaction, so every worker
reloads and the public verdict shows (or stops showing) the warning.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.complaints.casework import InvalidAction, NotAllowed, Officer
from registry.institutions.directory import bump_directory_version
from registry.compliance.models import AbnormalMark
from registry.institutions.models import Institution
from registry.numbers.quarters import Clock, system_clock

MAX_REASON = 2000


@dataclass(frozen=True)
class AbnormalEntry:
    institution: Institution
    since: dt.datetime | None
    reason: str | None
    actor: str | None


class AbnormalService:
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def mark(self, officer: Officer, institution_id: int, reason: str) -> None:
        self._set(officer, institution_id, True, reason)

    def unmark(self, officer: Officer, institution_id: int, reason: str) -> None:
        self._set(officer, institution_id, False, reason)

    def _set(self, officer: Officer, institution_id: int, abnormal: bool, reason: str) -> None:
        reason = (reason or "").strip()[:MAX_REASON]
        with self._sessions() as session:
            inst = session.scalar(select(Institution).where(Institution.id == institution_id)
                                  .with_for_update(of=Institution))
            if inst is None:
                raise LookupError("no such institution")
            if not officer.oversees(inst):
                raise NotAllowed("outside this authority's jurisdiction")
            if not reason:
                raise InvalidAction("reason_required")
            if bool(inst.abnormal) == abnormal:
                raise InvalidAction("wrong_state")
            inst.abnormal = abnormal
            session.add(AbnormalMark(institution_id=inst.id, abnormal=abnormal, reason=reason, actor=officer.actor,
                                     authority_id=officer.authority_id, at=self._clock()))
            bump_directory_version(session)
            session.commit()

    def listed(self, officer: Officer) -> list[AbnormalEntry]:
        """The institutions currently listed as abnormal in the officer's jurisdiction, newest first."""
        with self._sessions() as session:
            stmt = select(Institution).where(Institution.abnormal.is_(True))
            if not officer.national:
                stmt = stmt.where(Institution.review_authority_id == officer.authority_id)
            out = []
            for inst in session.scalars(stmt.order_by(Institution.name)):
                last = session.scalar(select(AbnormalMark).where(AbnormalMark.institution_id == inst.id)
                                      .order_by(AbnormalMark.id.desc()).limit(1))
                out.append(AbnormalEntry(inst, last.at if last else None, last.reason if last else None,
                                         last.actor if last else None))
            session.expunge_all()
        out.sort(key=lambda e: e.since or dt.datetime.min.replace(tzinfo=dt.timezone.utc), reverse=True)
        return out

    def history(self, officer: Officer | None = None, institution_id: int | None = None,
                limit: int = 200) -> list[AbnormalMark]:
        with self._sessions() as session:
            stmt = select(AbnormalMark).join(Institution, Institution.id == AbnormalMark.institution_id)
            if institution_id is not None:
                stmt = stmt.where(AbnormalMark.institution_id == institution_id)
            if officer is not None and not officer.national:
                stmt = stmt.where(Institution.review_authority_id == officer.authority_id)
            rows = list(session.scalars(stmt.order_by(AbnormalMark.id.desc()).limit(limit)))
            session.expunge_all()
            return rows


__all__ = ["AbnormalEntry", "AbnormalService"]

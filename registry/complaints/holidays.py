"""The admin-maintained holiday table, read by the working-day calendar (registry/complaints/workdays.py)."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.accounts import AccountError
from registry.complaints.models import Holiday


class HolidayService:
    """The admin-maintained holiday table, read by the working-day calendar where
    chinese-calendar has no data."""

    def __init__(self, *, sessions: sessionmaker[Session], admin_log=None) -> None:
        self._sessions = sessions
        self._log = admin_log  # an AdminLog (registry/accounts/adminlog.py): edits by an admin are sealed

    def _record(self, session: Session, actor: str | None, action: str, holiday: Holiday) -> None:
        if self._log is not None and actor:
            detail = json.dumps({"name": holiday.name, "is_workday": bool(holiday.is_workday)}, ensure_ascii=False,
                                sort_keys=True)
            self._log.record(session, actor=actor, action=action, target=holiday.day.isoformat(), detail=detail)

    def list(self) -> list[Holiday]:
        with self._sessions() as session:
            return list(session.scalars(select(Holiday).order_by(Holiday.day)))

    def add(self, *, day: dt.date, name: str, is_workday: bool = False, actor: str | None = None) -> Holiday:
        name = " ".join((name or "").split())[:100]
        if not name:
            raise AccountError("name_required", "请填写名称（如“春节”）", "give the day a name")
        with self._sessions() as session:
            holiday = Holiday(day=day, name=name, is_workday=is_workday)
            session.add(holiday)
            try:
                session.flush()
                self._record(session, actor, "holiday_add", holiday)
                session.commit()
            except IntegrityError:
                session.rollback()
                raise AccountError("day_taken", f"{day} 已在表中", f"{day} is already in the table") from None
            return holiday

    def delete(self, holiday_id: int, *, actor: str | None = None) -> bool:
        with self._sessions() as session:
            holiday = session.get(Holiday, holiday_id)
            if holiday is None:
                return False
            self._record(session, actor, "holiday_delete", holiday)
            session.delete(holiday)
            session.commit()
            return True

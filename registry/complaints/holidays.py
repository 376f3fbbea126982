"""The admin-maintained holiday table, read by the working-day calendar (registry/complaints/workdays.py)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.accounts import AccountError
from registry.complaints.models import Holiday


class HolidayService:
    """The admin-maintained holiday table, read by the working-day calendar where
    chinese-calendar has no data."""

    def __init__(self, *, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def list(self) -> list[Holiday]:
        with self._sessions() as session:
            return list(session.scalars(select(Holiday).order_by(Holiday.day)))

    def add(self, *, day: dt.date, name: str, is_workday: bool = False) -> Holiday:
        name = " ".join((name or "").split())[:100]
        if not name:
            raise AccountError("name_required", "请填写名称（如“春节”）", "give the day a name")
        with self._sessions() as session:
            holiday = Holiday(day=day, name=name, is_workday=is_workday)
            session.add(holiday)
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                raise AccountError("day_taken", f"{day} 已在表中", f"{day} is already in the table") from None
            return holiday

    def delete(self, holiday_id: int) -> bool:
        with self._sessions() as session:
            holiday = session.get(Holiday, holiday_id)
            if holiday is None:
                return False
            session.delete(holiday)
            session.commit()
            return True

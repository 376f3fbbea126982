"""Working days and complaint deadlines (docs/contract.md, "Regulatory rules").

Chinese public holidays and make-up workdays come from chinese-calendar where it has data (it
raises ``NotImplementedError`` past its last year, 2026 for 1.11). Beyond that a day is a
working day when it is a weekday, unless the admin's ``holidays`` table says otherwise; the
table also supplies make-up workdays (weekend days marked ``is_workday``).

Deadline rules: a complaint must be decided (accepted or rejected) within 7 working days of its
receipt, and concluded within 15 working days of its acceptance, extendable once by another 15.
Counting starts the day after the event: the day of receipt itself is not counted (as the
regulations' 「自收到之日起」 is read in practice), and the deadline is the end of the last day
in Asia/Shanghai time.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping

import chinese_calendar
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from registry.complaints.models import Holiday
from registry.numbers.quarters import SHANGHAI

DECIDE_WITHIN = 7
CONCLUDE_WITHIN = 15
EXTENSION = 15

def load_holiday_table(session: Session) -> dict[dt.date, bool]:
    """``{day: is_workday}`` from the admin's ``holidays`` table ({} while it does not exist)."""
    if not inspect(session.connection()).has_table(Holiday.__tablename__):
        return {}
    rows = session.execute(select(Holiday.day, Holiday.is_workday)).all()
    return {day: bool(is_workday) for day, is_workday in rows}


class WorkdayCalendar:
    """Answers "is this a working day" and counts working days; immutable, cheap to build."""

    def __init__(self, overrides: Mapping[dt.date, bool] | None = None) -> None:
        self._overrides = dict(overrides or {})

    @classmethod
    def from_session(cls, session: Session) -> "WorkdayCalendar":
        return cls(load_holiday_table(session))

    def knows(self, day: dt.date) -> bool:
        """Whether chinese-calendar has official data for ``day``'s year."""
        try:
            chinese_calendar.is_workday(day)
        except NotImplementedError:
            return False
        return True

    def is_workday(self, day: dt.date) -> bool:
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            pass
        if day in self._overrides:
            return self._overrides[day]
        return day.weekday() < 5

    def add_workdays(self, start: dt.date, n: int) -> dt.date:
        """The ``n``-th working day after ``start`` (``start`` itself is not counted)."""
        if n < 0:
            raise ValueError("n must not be negative")
        day, left = start, n
        while left:
            day += dt.timedelta(days=1)
            if self.is_workday(day):
                left -= 1
        return day

    def workdays_between(self, start: dt.date, end: dt.date) -> int:
        """Working days after ``start`` up to and including ``end`` (negative when end < start)."""
        if end < start:
            return -self.workdays_between(end, start)
        count, day = 0, start
        while day < end:
            day += dt.timedelta(days=1)
            count += self.is_workday(day)
        return count


def local_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(SHANGHAI).date()


def end_of_day(day: dt.date) -> dt.datetime:
    """The last instant of ``day`` in Shanghai (a deadline is met until then)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=SHANGHAI) - dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class Deadline:
    """The deadline that currently applies to a complaint, and how it stands ``today``."""

    stage: str  # decide | conclude | none
    due: dt.date | None
    extended: bool = False
    workdays_left: int | None = None

    @property
    def overdue(self) -> bool:
        return self.workdays_left is not None and self.workdays_left < 0 and self.stage != "none"


def decide_by(calendar: WorkdayCalendar, received: dt.datetime) -> dt.date:
    return calendar.add_workdays(local_day(received), DECIDE_WITHIN)


def conclude_by(calendar: WorkdayCalendar, accepted: dt.datetime, *, extended: bool = False) -> dt.date:
    due = calendar.add_workdays(local_day(accepted), CONCLUDE_WITHIN)
    return calendar.add_workdays(due, EXTENSION) if extended else due


def deadline_for(calendar: WorkdayCalendar, *, status: str, received: dt.datetime, accepted: dt.datetime | None,
                 extended: bool, today: dt.date) -> Deadline:
    """The running deadline: deciding while received, concluding while accepted, none after."""
    if status == "received":
        due = decide_by(calendar, received)
    elif status == "accepted" and accepted is not None:
        due = conclude_by(calendar, accepted, extended=extended)
    else:
        return Deadline(stage="none", due=None)
    left = calendar.workdays_between(today, due)
    # a due date that is itself a rest day is not "0 days left" once it has passed
    if due < today and left == 0:
        left = -1
    return Deadline(stage="decide" if status == "received" else "conclude", due=due, extended=extended,
                    workdays_left=left)


__all__ = [
    "CONCLUDE_WITHIN", "DECIDE_WITHIN", "Deadline", "EXTENSION", "WorkdayCalendar", "conclude_by",
    "deadline_for", "decide_by", "end_of_day", "load_holiday_table", "local_day",
]

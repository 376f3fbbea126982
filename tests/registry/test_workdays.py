"""Working-day arithmetic for complaint deadlines, across holidays and past the calendar's data."""
import datetime as dt

import pytest
from sqlalchemy import insert

from registry.complaints.models import Holiday
from registry.complaints.workdays import WorkdayCalendar, conclude_by, deadline_for, decide_by, load_holiday_table

D = dt.date
CST = dt.timezone(dt.timedelta(hours=8))


def at(y, m, d, h=10):
    return dt.datetime(y, m, d, h, tzinfo=CST)


@pytest.mark.parametrize("received, due", [
    # Spring Festival 2025: 1-28..2-4 off, Sunday 1-26 and Saturday 2-8 are make-up workdays
    (D(2025, 1, 24), D(2025, 2, 10)),
    # Spring Festival 2026: 2-15..2-23 off, Saturdays 2-14 and 2-28 worked
    (D(2026, 2, 13), D(2026, 3, 2)),
    # National Day 2025: 10-1..10-8 off, Sunday 9-28 and Saturday 10-11 worked
    (D(2025, 9, 26), D(2025, 10, 13)),
    # National Day 2026: 10-1..10-7 off, Saturday 10-10 worked
    (D(2026, 9, 30), D(2026, 10, 15)),
    # an ordinary week: receipt day not counted, weekends skipped
    (D(2025, 3, 3), D(2025, 3, 12)),
])
def test_decide_within_seven_working_days(received, due):
    assert decide_by(WorkdayCalendar(), at(received.year, received.month, received.day)) == due


def test_make_up_workdays_count_and_holidays_do_not():
    cal = WorkdayCalendar()
    assert cal.is_workday(D(2026, 2, 14)) and cal.is_workday(D(2025, 10, 11))  # Saturdays worked
    assert not cal.is_workday(D(2026, 2, 16)) and not cal.is_workday(D(2025, 10, 1))  # weekdays off
    assert cal.workdays_between(D(2025, 1, 24), D(2025, 2, 10)) == 7
    assert cal.workdays_between(D(2025, 2, 10), D(2025, 1, 24)) == -7


def test_conclude_within_fifteen_and_extension_once():
    cal = WorkdayCalendar()
    accepted = at(2026, 9, 25)  # Friday before National Day 2026
    # 9-28, 9-29, 9-30, 10-8, 10-9, 10-10 (Sat, worked), 10-12 … 10-16, 10-19 … 10-22
    assert conclude_by(cal, accepted) == D(2026, 10, 22)
    assert conclude_by(cal, accepted, extended=True) == cal.add_workdays(D(2026, 10, 22), 15) == D(2026, 11, 12)


def test_past_the_calendars_last_year_weekdays_plus_the_holiday_table():
    plain = WorkdayCalendar()
    assert not plain.knows(D(2027, 1, 4)) and plain.knows(D(2026, 12, 31))
    # weekdays only: 12-31, 1-1 (a Friday), 1-4 … 1-8
    assert plain.add_workdays(D(2026, 12, 30), 7) == D(2027, 1, 8)
    table = WorkdayCalendar({D(2027, 1, 1): False, D(2027, 1, 9): True})
    # New Year's Day off; Saturday 1-9 a make-up workday
    assert table.add_workdays(D(2026, 12, 30), 7) == D(2027, 1, 9)
    # Spring Festival 2027 (2-6..2-12 as an admin would enter it)
    spring = WorkdayCalendar({D(2027, 2, d): False for d in range(6, 13)} | {D(2027, 2, 20): True})
    assert spring.add_workdays(D(2027, 2, 5), 7) == D(2027, 2, 22)


def test_the_table_does_not_override_official_data():
    cal = WorkdayCalendar({D(2026, 10, 1): True, D(2026, 3, 3): False})
    assert not cal.is_workday(D(2026, 10, 1)) and cal.is_workday(D(2026, 3, 3))


def test_holiday_table_is_read_from_the_database(session):
    assert load_holiday_table(session) == {}
    session.execute(insert(Holiday), [
        {"day": D(2027, 1, 1), "name": "元旦", "is_workday": False},
        {"day": D(2027, 1, 9), "name": "调休上班", "is_workday": True},
    ])
    session.commit()
    cal = WorkdayCalendar.from_session(session)
    assert cal.add_workdays(D(2026, 12, 30), 7) == D(2027, 1, 9)


def test_deadline_stages_and_overdue():
    cal = WorkdayCalendar()
    received = at(2025, 1, 24)
    d = deadline_for(cal, status="received", received=received, accepted=None, extended=False, today=D(2025, 2, 10))
    assert d.stage == "decide" and d.due == D(2025, 2, 10) and d.workdays_left == 0 and not d.overdue
    d = deadline_for(cal, status="received", received=received, accepted=None, extended=False, today=D(2025, 2, 11))
    assert d.overdue and d.workdays_left == -1
    # a due date passed over a weekend is overdue at once
    d = deadline_for(cal, status="received", received=at(2025, 3, 3), accepted=None, extended=False,
                     today=D(2025, 3, 15))
    assert d.due == D(2025, 3, 12) and d.overdue
    d = deadline_for(cal, status="accepted", received=received, accepted=at(2025, 2, 5), extended=False,
                     today=D(2025, 2, 5))
    assert d.stage == "conclude" and d.workdays_left == 15
    assert deadline_for(cal, status="concluded", received=received, accepted=None, extended=False,
                        today=D(2025, 2, 5)).stage == "none"

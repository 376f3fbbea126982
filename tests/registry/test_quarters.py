import datetime as dt

import pytest

from registry.numbers.quarters import Quarter, iso_local, pending_window


def test_deadline_is_last_day_of_first_month_after():
    assert Quarter.parse("2020Q4").deadline == dt.date(2021, 1, 31)
    assert Quarter.parse("2021Q1").deadline == dt.date(2021, 4, 30)
    assert Quarter.parse("2021q2").deadline == dt.date(2021, 7, 31)
    assert Quarter.parse("2021Q3").deadline == dt.date(2021, 10, 31)


def test_late_and_started():
    q = Quarter.parse("2020Q4")
    assert not q.has_started(dt.date(2020, 9, 30)) and q.has_started(dt.date(2020, 10, 1))
    assert not q.is_late(dt.date(2021, 1, 31)) and q.is_late(dt.date(2021, 2, 1))


@pytest.mark.parametrize("today, since, until", [
    (dt.date(2026, 11, 23), dt.date(2026, 10, 1), dt.date(2027, 1, 31)),
    (dt.date(2027, 1, 31), dt.date(2026, 10, 1), dt.date(2027, 1, 31)),
    (dt.date(2027, 1, 15), dt.date(2026, 10, 1), dt.date(2027, 1, 31)),
    (dt.date(2027, 2, 1), dt.date(2027, 1, 1), dt.date(2027, 4, 30)),
])
def test_pending_window(today, since, until):
    assert pending_window(today) == (since, until)


@pytest.mark.parametrize("bad", ["2020Q5", "2020", "Q4 2020", ""])
def test_bad_quarters(bad):
    with pytest.raises(ValueError):
        Quarter.parse(bad)


def test_iso_local_has_offset():
    moment = dt.datetime(2026, 11, 23, 12, 15, 3, tzinfo=dt.timezone.utc)
    assert iso_local(moment) == "2026-11-23T20:15:03+08:00"

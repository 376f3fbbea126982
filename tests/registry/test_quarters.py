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


def test_local_texts_and_dates_made_once_per_second_equal_the_direct_ones():
    import datetime as dt
    import random

    from registry.numbers.quarters import SHANGHAI, iso_local, local_date

    rng = random.Random(3)
    utc = dt.timezone.utc
    moments = [dt.datetime(2026, 12, 31, 15, 59, 59, 999_999, tzinfo=utc),  # 23:59:59 in Shanghai
               dt.datetime(2026, 12, 31, 16, 0, 0, tzinfo=utc),  # the next local day
               dt.datetime(1990, 6, 1, 0, 30, tzinfo=utc),  # when China kept summer time
               dt.datetime(2026, 3, 1, 2, 3, 4, 500, tzinfo=dt.timezone(dt.timedelta(hours=-5)))]
    moments += [dt.datetime(2020, 1, 1, tzinfo=utc) + dt.timedelta(seconds=rng.randrange(10**9), microseconds=rng.randrange(10**6))
                for _ in range(2000)]
    for moment in moments * 2:  # the second time from the kept texts
        assert iso_local(moment) == moment.astimezone(SHANGHAI).isoformat(timespec="seconds")
        assert local_date(moment) == moment.astimezone(SHANGHAI).date()
    naive = dt.datetime(2026, 5, 5, 1, 2, 3)
    assert iso_local(naive) == "2026-05-05T09:02:03+08:00"

"""The query log survives hostile text and refused rows (issue 13, item 2)."""
from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import select

from registry.infra.db import make_engine, make_session_factory
from registry.numbers.normalize import clean_text, has_controls
from registry.verification.models import QueryLog
from registry.verification.querylog import DEFAULT_PARTITION, QueryLogBuffer, QueryLogDays, partition_name

AT = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc)


def buffer_for(engine) -> QueryLogBuffer:
    return QueryLogBuffer(engine=engine, secret=b"k")


def record(buffer, number="X1", institution="某机构", status="not_found"):
    buffer.record(at=AT, number=number, institution_text=institution, institution_id=None, status=status,
                  client_address="192.0.2.1")


def logged(engine) -> list[tuple]:
    with make_session_factory(engine)() as s:
        return [(r.number, r.institution_text, r.status)
                for r in s.scalars(select(QueryLog).order_by(QueryLog.id))]


def test_clean_text():
    assert clean_text("a\x00b\x07c\x7f") == "abc"
    assert clean_text("a\tb\r\nc") == "a b  c"
    assert clean_text("a\tb\r\nc\x00", multiline=True) == "a\tb\r\nc"
    assert clean_text("x\ud800y") == "x\ufffdy"
    assert clean_text("检测机构名称", 4) == "检测机构" and clean_text(None) == ""
    assert has_controls("a\x00") and not has_controls("普通文字 plain") and not has_controls("a\nb", multiline=True)


def test_nul_and_other_controls_never_reach_the_database(engine):
    buffer = buffer_for(engine)
    record(buffer, number="X1\x00", institution="a\x00b\x1b")
    record(buffer, number="X2", institution="lone \udc80 surrogate")
    assert buffer.flush() == 2
    record(buffer, number="X3")  # later records are written as before
    assert buffer.flush() == 1
    assert logged(engine) == [("X1", "ab", "not_found"), ("X2", "lone \ufffd surrogate", "not_found"),
                              ("X3", "某机构", "not_found")]
    assert len(buffer) == 0 and buffer.rejected == 0


def test_a_row_the_database_refuses_is_dropped_alone(engine, caplog):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any text of any length")
    buffer = buffer_for(engine)
    for n in range(7):
        record(buffer, number=f"G{n}", institution="张三的私人联系方式")
    record(buffer, number="BAD", institution="张三的私人联系方式", status="x" * 40)  # longer than the column
    record(buffer, number="G7")
    with caplog.at_level(logging.WARNING):
        assert buffer.flush() == 8
    assert [n for n, _, _ in logged(engine)] == [f"G{n}" for n in range(8)]
    assert buffer.rejected == 1 and len(buffer) == 0
    assert "张三" not in caplog.text and "BAD" not in caplog.text
    record(buffer, number="G8")
    assert buffer.flush() == 1


def test_an_unreachable_database_keeps_every_record(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/missing/dir/registry.db")
    buffer = buffer_for(engine)
    record(buffer, number="K1")
    record(buffer, number="K2")
    assert buffer.flush() == 0
    assert len(buffer) == 2 and buffer.rejected == 0
    engine.dispose()


# --- the log's days: partitions on PostgreSQL, retention on both -----------------------------
def partition_of(engine, number: str) -> str:
    with engine.connect() as conn:
        return conn.exec_driver_sql("SELECT tableoid::regclass::text FROM query_log WHERE number = %(n)s",
                                    {"n": number}).scalar_one()


def test_a_flush_creates_its_days_partition_and_rows_without_one_are_never_lost(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("partitions are PostgreSQL's")
    days = QueryLogDays(engine=engine)
    assert days.partitioned
    without = QueryLogBuffer(engine=engine, secret=b"k")  # a buffer that makes no partitions
    record(without, number="EARLY")
    assert without.flush() == 1
    assert partition_of(engine, "EARLY") == DEFAULT_PARTITION  # kept in the safety net

    buffer = QueryLogBuffer(engine=engine, secret=b"k", days=days)
    record(buffer, number="ON-TIME")
    assert buffer.flush() == 1
    assert partition_of(engine, "ON-TIME") == partition_name(AT.date())
    assert partition_of(engine, "EARLY") == partition_name(AT.date())  # moved out of the default partition
    record(buffer, number="AGAIN")
    assert buffer.flush() == 1 and days.ensure([AT.date()]) == []  # known: nothing more made


def test_retention_drops_whole_old_days_and_keeps_the_rest(engine):
    days = QueryLogDays(engine=engine, batch=2)
    buffer = QueryLogBuffer(engine=engine, secret=b"k", days=days)
    old, kept = dt.datetime(2024, 1, 5, 23, 59, tzinfo=dt.timezone.utc), dt.datetime(2024, 4, 30, tzinfo=dt.timezone.utc)
    for n in range(5):
        buffer.record(at=old, number=f"OLD{n}", institution_text=None, institution_id=None, status="found",
                      client_address="192.0.2.1")
    assert buffer.flush() == 5
    for n in range(3):
        buffer.record(at=kept, number=f"NEW{n}", institution_text=None, institution_id=None, status="found",
                      client_address="192.0.2.1")
    assert buffer.flush() == 3
    figures = days.maintain(today=dt.date(2024, 5, 1), keep_days=30)
    assert sorted(n for n, _, _ in logged(engine)) == ["NEW0", "NEW1", "NEW2"]
    if engine.dialect.name == "postgresql":
        assert figures["dropped"] == 1 and figures["deleted"] == 0
        present = days.days()
        assert dt.date(2024, 1, 5) not in present
        # made ahead: yesterday to a week on
        assert {dt.date(2024, 4, 30) + dt.timedelta(days=n) for n in range(9)} <= set(present)
    else:
        assert figures == {"created": 0, "dropped": 0, "deleted": 5}  # in batches of 2: 2, 2, 1
    assert days.maintain(today=dt.date(2024, 5, 1), keep_days=30)["deleted"] == 0

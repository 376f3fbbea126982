"""The query log survives hostile text and refused rows (issue 13, item 2)."""
from __future__ import annotations

import datetime as dt
import logging

import pytest
from sqlalchemy import select

from registry.infra.db import make_engine, make_session_factory
from registry.numbers.normalize import clean_text, has_controls
from registry.verification.models import QueryLog
from registry.verification.querylog import QueryLogBuffer

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

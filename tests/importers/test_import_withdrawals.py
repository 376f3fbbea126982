"""Withdrawal files: number and reason columns, ranges, the required reason."""
from __future__ import annotations

import io

import pytest

from importers.errors import FileRefused
from importers.withdrawals import Withdrawal, read_withdrawals
from tests.importers.file_builders import csv_bytes, xlsx_bytes


def read(data: bytes, filename: str = "withdrawals.csv", **limits):
    withdrawal_file = read_withdrawals(io.BytesIO(data), filename, **limits)
    return list(withdrawal_file.rows()), withdrawal_file


def test_numbers_and_ranges_with_their_reason():
    data = csv_bytes([["撤销原因", "报告编号"], ["报告作废，已重新出具", "wt-01"], ["录入错误", "WT-08~WT-10"]],
                     encoding="gbk")
    rows, withdrawal_file = read(data)
    assert rows == [Withdrawal(2, "WT-01", "报告作废，已重新出具")] + [
        Withdrawal(3, f"WT-{n:02d}", "录入错误") for n in (8, 9, 10)]
    assert withdrawal_file.problems == [] and withdrawal_file.rows_read == 2


def test_reason_is_required_per_row():
    data = xlsx_bytes([["report_number", "reason"], ["A-1", "   "], ["A-2", "void"], ["bad!", "void"]])
    rows, withdrawal_file = read(data, "w.xlsx")
    assert rows == [Withdrawal(3, "A-2", "void")]
    missing, bad = withdrawal_file.problems
    assert (missing.code, missing.location) == ("reason_missing", "Sheet1!B2")
    assert "原因" in missing.message_zh and "reason" in missing.message_en
    assert (bad.code, bad.location) == ("bad_character", "Sheet1!A4")


def test_reason_column_is_required():
    with pytest.raises(FileRefused) as refused:
        read(csv_bytes([["报告编号"], ["A-1"]]))
    assert refused.value.code == "missing_column"
    assert "撤销原因" in refused.value.message_zh and "reason" in refused.value.message_en


def test_limits_apply_to_withdrawals_too():
    _, withdrawal_file = read(csv_bytes([["报告编号", "撤销原因"], ["1~11", "x"]]), max_range=10)
    assert [p.code for p in withdrawal_file.problems] == ["range_too_long"]
    with pytest.raises(FileRefused) as refused:
        read(csv_bytes([["报告编号", "撤销原因"], ["1~6", "x"], ["7~12", "x"]]), max_numbers=10)
    assert refused.value.code == "too_many_numbers"

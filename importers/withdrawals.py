"""Withdrawal files: report numbers (or ranges) of voided reports, each with its reason.

The reason is required: a withdrawal without one is a rejected row (``reason_missing``). A
restore file has the same columns, its reason optional (``reason_required=False``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from importers.errors import FileWarning, RowProblem
from importers.numbers import (
    DEFAULT_MAX_NUMBERS,
    DEFAULT_MAX_PROBLEMS,
    DEFAULT_MAX_RANGE,
    NUMBER_COLUMN,
    Rejected,
    parse_number_cell,
    too_many_numbers,
    too_many_problems,
)
from importers.tabular import DEFAULT_MAX_BYTES, Column, Layout, Row, locate_columns, open_table
from registry.numbers.normalize import clean_text

MAX_REASON_LENGTH = 500

REASON_COLUMN = Column("reason", "撤销原因", "reason",
                       ("撤回原因", "作废原因", "原因", "withdraw reason", "withdrawal reason", "withdraw_reason"))


@dataclass(frozen=True)
class Withdrawal:
    line: int
    number: str
    reason: str


class WithdrawalFile:
    """A withdrawal file being read; iterate :meth:`rows` once."""

    def __init__(self, layout: Layout, filename: str, *, max_numbers: int, max_range: int, max_problems: int,
                 reason_required: bool = True):
        self.filename = filename
        self.problems: list[RowProblem] = []
        self.warnings: list[FileWarning] = list(layout.warnings)
        self.rows_read = 0
        self._layout = layout
        self._max_numbers = max_numbers
        self._max_range = max_range
        self._max_problems = max_problems
        self._reason_required = reason_required
        self._started = False

    def rows(self) -> Iterator[Withdrawal]:
        if self._started:
            raise RuntimeError("rows() can be iterated once")
        self._started = True
        total = 0
        number_index = self._layout.columns["number"]
        reason_index = self._layout.columns.get("reason")
        for row in self._layout.data_rows:
            self.rows_read += 1
            raw = row.text(number_index)
            try:
                span = parse_number_cell(raw, max_range=self._max_range)
            except Rejected as rejected:
                self._reject(row, number_index, raw, rejected)
                continue
            reason = " ".join(clean_text(row.text(reason_index)).split()) if reason_index is not None else ""
            if not reason and self._reason_required:
                self._reject(row, reason_index, row.text(reason_index), Rejected(
                    "reason_missing", "撤销原因不能为空：撤销报告编号必须说明原因",
                    "the reason is missing: every withdrawal needs a reason (撤销原因)"))
                continue
            if len(reason) > MAX_REASON_LENGTH:
                self._reject(row, reason_index, row.text(reason_index), Rejected(
                    "reason_too_long", f"撤销原因超过 {MAX_REASON_LENGTH} 个字符",
                    f"the reason is longer than {MAX_REASON_LENGTH} characters"))
                continue
            total += span.count
            if total > self._max_numbers:
                raise too_many_numbers(self.filename, self._max_numbers)
            for number in span:
                yield Withdrawal(row.line, number, reason)

    def _reject(self, row: Row, index: int, raw: str, rejected: Rejected) -> None:
        self.problems.append(RowProblem(row.line, row.location(index), raw, rejected.code,
                                        rejected.message_zh, rejected.message_en))
        if len(self.problems) > self._max_problems:
            raise too_many_problems(self.filename, self._max_problems)


def read_withdrawals(fileobj: BinaryIO, filename: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
                     max_numbers: int = DEFAULT_MAX_NUMBERS, max_range: int = DEFAULT_MAX_RANGE,
                     max_problems: int = DEFAULT_MAX_PROBLEMS, reason_required: bool = True) -> WithdrawalFile:
    """Open a withdrawal (or, ``reason_required=False``, restore) file; a missing column or
    unreadable file raises :class:`FileRefused` here."""
    table = open_table(fileobj, filename, max_bytes=max_bytes)
    reason = REASON_COLUMN if reason_required else dataclasses.replace(REASON_COLUMN, required=False)
    layout = locate_columns(table, [NUMBER_COLUMN, reason], filename)
    return WithdrawalFile(layout, filename, max_numbers=max_numbers, max_range=max_range, max_problems=max_problems,
                          reason_required=reason_required)

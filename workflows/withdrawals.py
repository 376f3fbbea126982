"""Withdrawing the numbers of voided reports listed in a file (number and reason per row)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from importers.errors import RowProblem
from importers.withdrawals import read_withdrawals
from registry.registration.service import RegistrationService, WithdrawResult

from .problems import not_registered_problems, write_rejected_csv


def read_withdrawal_file(fh: BinaryIO, file_name: str, *, max_bytes: int | None = None
                         ) -> tuple[list[tuple[int | None, str, str]], list[RowProblem]]:
    """``(items, problems)``: the (line, number, reason) rows to withdraw and the rejected rows.
    Raises ``FileRefused`` when the file cannot be read."""
    parsed = read_withdrawals(fh, file_name, **({"max_bytes": max_bytes} if max_bytes else {}))
    items = [(w.line, w.number, w.reason) for w in parsed.rows()]
    return items, list(parsed.problems)


@dataclass
class FileWithdrawal:
    result: WithdrawResult
    problems: list[RowProblem]  # rejected rows, then the numbers this institution never registered


def withdraw_items(registration: RegistrationService, *, institution_id: int,
                   items: list[tuple[int | None, str, str]], problems: list[RowProblem] | None = None,
                   rejected_csv: str | Path | None = None) -> FileWithdrawal:
    result = registration.withdraw(institution_id=institution_id, items=items)
    problems = list(problems or []) + not_registered_problems(result.not_registered)
    if rejected_csv and problems:
        write_rejected_csv(rejected_csv, problems)
    return FileWithdrawal(result=result, problems=problems)


def withdraw_file(registration: RegistrationService, fh: BinaryIO, *, file_name: str, institution_id: int,
                  max_bytes: int | None = None, rejected_csv: str | Path | None = None) -> FileWithdrawal:
    """Withdraw the rows of a withdrawal file; raises ``FileRefused`` with nothing changed."""
    items, problems = read_withdrawal_file(fh, file_name, max_bytes=max_bytes)
    return withdraw_items(registration, institution_id=institution_id, items=items, problems=problems,
                          rejected_csv=rejected_csv)

"""Withdrawing the numbers of voided reports listed in a file (number and reason per row), and
restoring numbers withdrawn by mistake (the same columns, the reason optional).

The portal shows what a withdrawal or restore would change before anything changes: the checked
items wait in a small file under FILES_DIR (:class:`PendingChanges`) until the user confirms.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from importers.errors import RowProblem
from registry.registration.service import RegistrationService, RestoreResult, WithdrawResult

from .pending_forms import PendingForms
from .problems import not_registered_problems, write_rejected_csv_or_error
from .sandbox import Sandbox

Item = tuple[int | None, str, str]


def read_withdrawal_file(fh: BinaryIO, file_name: str, *, max_bytes: int | None = None, restore: bool = False,
                         sandbox: Sandbox | None = None) -> tuple[list[Item], list[RowProblem]]:
    """``(items, problems)``: the (line, number, reason) rows to withdraw (or, ``restore``, to
    restore: the reason optional) and the rejected rows. Raises ``FileRefused`` when the file
    cannot be read. Parsed in ``sandbox`` (workflows/sandbox.py)."""
    with (sandbox or Sandbox()).withdrawals(fh, file_name, reason_required=not restore,
                                            **({"max_bytes": max_bytes} if max_bytes else {})) as parsed:
        items = [(w.line, w.number, w.reason) for w in parsed.rows()]
    return items, list(parsed.problems)


@dataclass
class FileWithdrawal:
    result: WithdrawResult
    problems: list[RowProblem]  # rejected rows, then the numbers this institution never registered
    rejected_csv_error: str | None = None  # why ``rejected_csv`` could not be written (a full disk)


@dataclass
class FileRestore:
    result: RestoreResult
    problems: list[RowProblem]  # rejected rows, then the numbers this institution never registered
    rejected_csv_error: str | None = None  # why ``rejected_csv`` could not be written (a full disk)


def withdraw_items(registration: RegistrationService, *, institution_id: int, items: list[Item],
                   problems: list[RowProblem] | None = None, rejected_csv: str | Path | None = None,
                   actor: str | None = None, source: str = "cli") -> FileWithdrawal:
    result = registration.withdraw(institution_id=institution_id, items=items, actor=actor, source=source)
    problems = list(problems or []) + not_registered_problems(result.not_registered)
    error = write_rejected_csv_or_error(rejected_csv, problems) if rejected_csv and problems else None
    return FileWithdrawal(result=result, problems=problems, rejected_csv_error=error)


def restore_items(registration: RegistrationService, *, institution_id: int, items: list[Item],
                  problems: list[RowProblem] | None = None, rejected_csv: str | Path | None = None,
                  actor: str | None = None, source: str = "cli") -> FileRestore:
    result = registration.restore(institution_id=institution_id, items=items, actor=actor, source=source)
    problems = list(problems or []) + not_registered_problems(result.not_registered)
    error = write_rejected_csv_or_error(rejected_csv, problems) if rejected_csv and problems else None
    return FileRestore(result=result, problems=problems, rejected_csv_error=error)


def withdraw_file(registration: RegistrationService, fh: BinaryIO, *, file_name: str, institution_id: int,
                  max_bytes: int | None = None, rejected_csv: str | Path | None = None,
                  actor: str | None = None, source: str = "cli", sandbox: Sandbox | None = None) -> FileWithdrawal:
    """Withdraw the rows of a withdrawal file; raises ``FileRefused`` with nothing changed."""
    items, problems = read_withdrawal_file(fh, file_name, max_bytes=max_bytes, sandbox=sandbox)
    return withdraw_items(registration, institution_id=institution_id, items=items, problems=problems,
                          rejected_csv=rejected_csv, actor=actor, source=source)


def restore_file(registration: RegistrationService, fh: BinaryIO, *, file_name: str, institution_id: int,
                 max_bytes: int | None = None, rejected_csv: str | Path | None = None,
                 actor: str | None = None, source: str = "cli", sandbox: Sandbox | None = None) -> FileRestore:
    """Restore the numbers of a restore file; raises ``FileRefused`` with nothing changed."""
    items, problems = read_withdrawal_file(fh, file_name, max_bytes=max_bytes, restore=True, sandbox=sandbox)
    return restore_items(registration, institution_id=institution_id, items=items, problems=problems,
                         rejected_csv=rejected_csv, actor=actor, source=source)


@dataclass
class PendingChange:
    key: str
    kind: str  # withdraw | restore
    institution_id: int
    items: list[Item]
    problems: list[RowProblem]


class PendingChanges:
    """Checked withdrawals and restores awaiting confirmation (``FILES_DIR/pending/``, kept at most
    a day): the check-answers store of :class:`PendingForms`, owned by the institution, about the
    kind of change."""

    def __init__(self, files_dir: Path, *, keep: dt.timedelta = dt.timedelta(days=1)) -> None:
        self._forms = PendingForms(files_dir, keep=keep, folder="pending")

    def save(self, *, kind: str, institution_id: int, items: list[Item], problems: list[RowProblem]) -> str:
        return self._forms.save(owner=str(institution_id), subject=kind, values={
            "items": items, "problems": [dataclasses.asdict(p) for p in problems]})

    def load(self, key: str, *, kind: str, institution_id: int) -> PendingChange | None:
        """The pending change ``key`` of this institution and kind, or None (unknown, expired,
        another institution's, or confirmed already)."""
        return self._change(key, kind, institution_id,
                            self._forms.load(key, owner=str(institution_id), subject=kind))

    def take(self, key: str, *, kind: str, institution_id: int) -> PendingChange | None:
        """Load and remove the pending change: of two confirmations, only one gets it."""
        return self._change(key, kind, institution_id,
                            self._forms.take(key, owner=str(institution_id), subject=kind))

    def discard(self, key: str) -> None:
        self._forms.discard(key)

    def delete_old(self) -> None:
        self._forms.delete_old()

    @staticmethod
    def _change(key: str, kind: str, institution_id: int, values: dict | None) -> PendingChange | None:
        if values is None:
            return None
        return PendingChange(key=key, kind=kind, institution_id=institution_id,
                             items=[tuple(i) for i in values["items"]],
                             problems=[RowProblem(**p) for p in values["problems"]])

"""Withdrawing the numbers of voided reports listed in a file (number and reason per row), and
restoring numbers withdrawn by mistake (the same columns, the reason optional).

The portal shows what a withdrawal or restore would change before anything changes: the checked
items wait in a small file under FILES_DIR (:class:`PendingChanges`) until the user confirms.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from importers.errors import RowProblem
from registry.registration.service import RegistrationService, RestoreResult, WithdrawResult

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
    """Checked withdrawals and restores awaiting confirmation: one JSON file each under
    ``FILES_DIR/pending/``, named by a random key, kept at most ``keep`` (a day)."""

    def __init__(self, files_dir: Path, *, keep: dt.timedelta = dt.timedelta(days=1)) -> None:
        self._dir = Path(files_dir) / "pending"
        self._keep = keep

    def save(self, *, kind: str, institution_id: int, items: list[Item], problems: list[RowProblem]) -> str:
        self._dir.mkdir(parents=True, exist_ok=True)
        self.delete_old()
        key = secrets.token_urlsafe(18)
        body = {"kind": kind, "institution_id": institution_id, "items": items,
                "problems": [dataclasses.asdict(p) for p in problems]}
        tmp = self._dir / f"{key}.tmp"
        tmp.write_text(json.dumps(body, ensure_ascii=False))
        tmp.replace(self._dir / f"{key}.json")
        return key

    def _path(self, key: str) -> Path | None:
        if not key or not all(c.isalnum() or c in "-_" for c in key) or len(key) > 64:
            return None
        return self._dir / f"{key}.json"

    def load(self, key: str, *, kind: str, institution_id: int) -> PendingChange | None:
        """The pending change ``key`` of this institution and kind, or None (unknown, expired,
        another institution's, or confirmed already)."""
        path = self._path(key)
        try:
            if path is None or time.time() - path.stat().st_mtime > self._keep.total_seconds():
                return None
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if body.get("kind") != kind or body.get("institution_id") != institution_id:
            return None
        return PendingChange(key=key, kind=kind, institution_id=institution_id,
                             items=[tuple(i) for i in body["items"]],
                             problems=[RowProblem(**p) for p in body["problems"]])

    def take(self, key: str, *, kind: str, institution_id: int) -> PendingChange | None:
        """Load and remove the pending change: of two confirmations, only one gets it."""
        change = self.load(key, kind=kind, institution_id=institution_id)
        if change is None:
            return None
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return None  # another request took it first
        return change

    def discard(self, key: str) -> None:
        path = self._path(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def delete_old(self) -> None:
        if not self._dir.exists():
            return
        cutoff = time.time() - self._keep.total_seconds()
        for path in self._dir.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                pass

"""Rejected rows as the user gets them back: the ``--rejected-csv`` file and the JSON problem."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable

from importers.errors import RowProblem

from .cells import neutralise

NOT_REGISTERED_ZH = "该机构未登记此报告编号"
NOT_REGISTERED_EN = "this institution has not registered this number"


def problem_json(p: RowProblem) -> dict:
    return {"line": p.line, "location": p.location, "value": p.raw, "code": p.code,
            "reason": p.message_zh, "reason_en": p.message_en}


def write_rejected_csv(path: str | Path, problems: Iterable[RowProblem]) -> None:
    """The rejected rows in the CLI's ``--rejected-csv`` layout (UTF-8 with BOM, for Excel); text
    that a spreadsheet would take for a formula is neutralised (a leading apostrophe).

    Written beside ``path`` and renamed into place: a full disk (``OSError``) leaves no
    half-written file at ``path``."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "w", newline="", encoding="utf-8-sig") as fh:
            writer = csv.writer(fh)
            writer.writerow(["line", "location", "value", "code", "reason", "reason_en"])
            for p in problems:
                writer.writerow([p.line or "", p.location or "", neutralise(p.raw), p.code,
                                 neutralise(p.message_zh), neutralise(p.message_en)])
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_rejected_csv_or_error(path: str | Path, problems: Iterable[RowProblem]) -> str | None:
    """:func:`write_rejected_csv`, for a flow whose changes already stand: None when written,
    else why not (a full disk, ``OSError``), for the caller to report in one line."""
    try:
        write_rejected_csv(path, problems)
    except OSError as exc:
        return exc.strerror or exc.__class__.__name__
    return None


def not_registered_problems(not_registered: Iterable[tuple[int | None, str]]) -> list[RowProblem]:
    """A withdrawal's numbers the institution never registered, as rejected rows."""
    return [RowProblem(line=line, location=None, raw=number, code="not_registered",
                       message_zh=NOT_REGISTERED_ZH, message_en=NOT_REGISTERED_EN)
            for line, number in not_registered]

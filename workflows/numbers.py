"""The one file → batch flow: read a file of report numbers and register it as one batch.

Used alike by the CLI (``import-numbers``), the upload API (``POST /api/v1/batches``) and the
institution portal's import of a confirmed upload (within the request or as a background job).
The same file again for the same institution and quarter gives the earlier receipt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from importers.errors import FileWarning, RowProblem
from registry.numbers.quarters import Quarter
from registry.registration.service import Receipt, RegistrationService, sha256_of

from .problems import write_rejected_csv_or_error
from .sandbox import Sandbox


class NoValidNumber(Exception):
    """The file holds no valid report number; nothing was registered."""

    def __init__(self, problems: list[RowProblem]) -> None:
        super().__init__("the file holds no valid report number")
        self.problems = problems


@dataclass
class FileImport:
    """A registered file: its receipt (``receipt.repeated``: the earlier one, nothing changed),
    the rejected rows and the reader's warnings."""

    receipt: Receipt
    problems: list[RowProblem] = field(default_factory=list)
    warnings: list[FileWarning] = field(default_factory=list)
    rejected_csv_error: str | None = None  # why ``rejected_csv`` could not be written (a full disk)


def register_number_file(
    registration: RegistrationService, fh: BinaryIO, *, file_name: str, institution_id: int, quarter: Quarter,
    source: str, created_by: str, max_bytes: int, sha256: str | None = None, refuse_empty: bool = False,
    progress: Callable[[int], None] | None = None, rejected_csv: str | Path | None = None,
    sandbox: Sandbox | None = None,
) -> FileImport:
    """Register the numbers of ``fh`` as one batch (all valid rows together, or nothing).

    Raises ``FileRefused`` (the file cannot be read), ``RegistrationRefused`` (the registration
    as a whole is refused) or, with ``refuse_empty``, :class:`NoValidNumber` — in every case
    nothing changed. ``rejected_csv`` receives the rejected rows when there are any (when it cannot
    be written, a full disk, the registration stands and ``rejected_csv_error`` says why). The file is
    parsed in ``sandbox`` (workflows/sandbox.py; the default limits when None)."""
    sandbox = sandbox or Sandbox()
    digest = sha256 or sha256_of(fh)
    repeat = registration.find_repeat(institution_id=institution_id, quarter=quarter, sha256=digest)
    if repeat is not None:
        return FileImport(receipt=repeat)
    if refuse_empty:
        # a first pass finds a file with no valid row before anything is registered
        checking = sandbox.report_numbers(fh, file_name, max_bytes=max_bytes)
        if sum(1 for _ in checking.numbers()) == 0:  # read to the end: a refusal later in the file shows now
            raise NoValidNumber(checking.problems)
        fh.seek(0)
    with sandbox.report_numbers(fh, file_name, max_bytes=max_bytes) as parsed:
        receipt = registration.register(
            institution_id=institution_id, quarter=quarter, numbers=parsed.numbers(), sha256=digest, source=source,
            file_name=file_name[:255], created_by=created_by, rejected=lambda: len(parsed.problems),
            progress=progress, documents=parsed.documents,
        )
    done = FileImport(receipt=receipt, problems=list(parsed.problems), warnings=list(parsed.warnings))
    kept = documents_kept_warning(receipt)
    if kept is not None:
        done.warnings.append(kept)
    if rejected_csv and parsed.problems:
        # the batch is registered; only the report of its rejected rows may fail (a full disk)
        done.rejected_csv_error = write_rejected_csv_or_error(rejected_csv, parsed.problems)
    return done


def documents_kept_warning(receipt: Receipt) -> FileWarning | None:
    """A warning when some document fingerprints the batch carried were not stored: their numbers
    were registered before, and a registration keeps the fingerprint it came with (or none) — the
    transparency log has committed to it. None when every fingerprint given was stored."""
    given = receipt.documents_given or 0
    kept = given - receipt.documents
    if kept <= 0:
        return None
    return FileWarning(
        code="documents_kept",
        message_zh=f"{kept:,} 个文件摘要（SHA-256）未登记：这些编号此前已登记，保留登记时的文件摘要（或无摘要）；"
                   f"已登记的编号不能补登文件摘要。",
        message_en=f"{kept:,} document fingerprint(s) (SHA-256) not registered: their numbers were registered "
                   f"before and keep the fingerprint they were registered with (or none); a registered number "
                   f"cannot be given one afterwards.",
    )

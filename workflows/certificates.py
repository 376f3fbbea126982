"""Upserting a certificate list (CSV/XLSX) as provincial bureaus send it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.orm import Session, sessionmaker

from importers.errors import FileRefused, RowProblem
from registry.institutions.authorities import seed_authorities
from registry.institutions.service import CertificateImportResult, import_certificate_rows

from .problems import write_rejected_csv_or_error
from .sandbox import Sandbox


@dataclass
class CertificateFileImport:
    result: CertificateImportResult
    problems: list[RowProblem]  # rows the reader rejected, then rows the registry refused
    rejected_csv_error: str | None = None  # why ``rejected_csv`` could not be written (a full disk)


def import_certificate_file(sessions: sessionmaker[Session], fh: BinaryIO, *, file_name: str,
                            rejected_csv: str | Path | None = None,
                            sandbox: Sandbox | None = None) -> CertificateFileImport:
    """One transaction: the authorities, then every certificate row. Raises ``FileRefused`` with
    nothing changed. The list is parsed in ``sandbox`` (workflows/sandbox.py)."""
    with sessions() as session:
        seed_authorities(session)
        try:
            with (sandbox or Sandbox()).certificates(fh, file_name) as parsed:
                result = import_certificate_rows(session, parsed.rows(), source=f"file:{file_name}")
        except FileRefused:
            session.rollback()
            raise
        session.commit()
    problems = list(parsed.problems) + [
        RowProblem(line=line, location=None, raw=raw, code="rejected", message_zh=zh, message_en=en)
        for line, raw, zh, en in result.problems
    ]
    error = write_rejected_csv_or_error(rejected_csv, problems) if rejected_csv and problems else None
    return CertificateFileImport(result=result, problems=problems, rejected_csv_error=error)

"""The two steps of a portal upload: check the stored file, then (once confirmed) register it.

``check`` reads the whole file without registering anything and keeps the validation report
(counts, first rejected rows, warnings, an earlier registration of the same file) and the
rejected rows as CSV. ``import_`` registers the file through the one file → batch flow
(workflows/numbers.py). Either runs within the request or as a job (workflows/jobs.py).
"""
from __future__ import annotations

import logging

from importers.errors import FileRefused
from importers.numbers import read_report_numbers
from registry.numbers.quarters import Quarter
from registry.registration.models import Upload
from registry.registration.service import Receipt, RegistrationRefused, RegistrationService
from registry.registration.uploads import UploadService

from .numbers import register_number_file
from .problems import problem_json, write_rejected_csv

log = logging.getLogger(__name__)

PREVIEW_PROBLEMS = 20
PROGRESS_EVERY = 50_000


class UploadSteps:
    def __init__(self, *, uploads: UploadService, registration: RegistrationService, max_bytes: int) -> None:
        self._uploads = uploads
        self._registration = registration
        self._max_bytes = max_bytes

    def check(self, upload_id: int) -> Upload:
        """Read the whole file; keep the validation report and the rejected rows."""
        uploads = self._uploads
        upload = uploads.get(upload_id)
        repeat = self._registration.find_repeat(institution_id=upload.institution_id,
                                                quarter=Quarter.parse(upload.quarter), sha256=upload.sha256)
        try:
            with open(uploads.path(upload), "rb") as fh:
                parsed = read_report_numbers(fh, upload.file_name, max_bytes=self._max_bytes)
                count = 0
                for _ in parsed.numbers():
                    count += 1
                    if count % PROGRESS_EVERY == 0:
                        uploads.report_progress(upload, count)
        except FileRefused as exc:
            uploads.update(upload_id, state="refused", progress=0,
                           report={"refused": {"code": exc.code, "zh": exc.message_zh, "en": exc.message_en}})
            return uploads.get(upload_id)
        write_rejected_csv(uploads.rejected_path(upload), parsed.problems)
        report = {
            "rows": parsed.rows,
            "numbers": count,
            "rejected": len(parsed.problems),
            "problems": [problem_json(p) for p in parsed.problems[:PREVIEW_PROBLEMS]],
            "warnings": [{"code": w.code, "zh": w.message_zh, "en": w.message_en} for w in parsed.warnings],
            "repeat_batch_id": repeat.batch_id if repeat else None,
        }
        uploads.update(upload_id, state="ready", progress=0, report=report)
        return uploads.get(upload_id)

    def import_(self, upload_id: int, *, registration: RegistrationService | None = None) -> Receipt:
        """Register a checked upload as one batch (all or nothing). A job passes a registration
        service judging lateness at the moment the uploader confirmed."""
        uploads = self._uploads
        upload = uploads.get(upload_id)
        uploads.report_progress(upload, 0)
        uploads.update(upload_id, state="importing", progress=0)
        try:
            with open(uploads.path(upload), "rb") as fh:
                done = register_number_file(
                    registration or self._registration, fh, file_name=upload.file_name,
                    institution_id=upload.institution_id, quarter=Quarter.parse(upload.quarter), source="file",
                    created_by=upload.uploaded_by, max_bytes=self._max_bytes, sha256=upload.sha256,
                    progress=lambda n: uploads.report_progress(upload, n))
        except RegistrationRefused as exc:
            uploads.update(upload_id, state="failed", error=f"{exc.message_zh} / {exc.message_en}")
            raise
        except Exception as exc:
            log.exception("import of upload %s failed", upload_id)
            uploads.update(upload_id, state="failed", error=f"{exc.__class__.__name__}")
            raise
        receipt = done.receipt
        uploads.update(upload_id, state="done", batch_id=receipt.batch_id,
                       progress=receipt.accepted + receipt.duplicates)
        uploads.progress_path(upload).unlink(missing_ok=True)
        return receipt

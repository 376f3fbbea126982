"""The two steps of a portal upload: check the stored file, then (once confirmed) register it.

``check`` reads the whole file without registering anything and keeps the validation report
(counts, first rejected rows, warnings, an earlier registration of the same file) and the
rejected rows as CSV. ``import_`` registers the file through the one file → batch flow
(workflows/numbers.py). Either runs within the request or as a job (workflows/jobs.py).
"""
from __future__ import annotations

import logging

from importers.errors import FileRefused
from registry.numbers.quarters import Quarter
from registry.registration.models import Upload
from registry.registration.service import Receipt, RegistrationRefused, RegistrationService
from registry.registration.uploads import UploadService

from .numbers import register_number_file
from .problems import problem_json, write_rejected_csv
from .sandbox import Sandbox

log = logging.getLogger(__name__)

PREVIEW_PROBLEMS = 20
PROGRESS_EVERY = 50_000


class UploadSteps:
    def __init__(self, *, uploads: UploadService, registration: RegistrationService, max_bytes: int,
                 sandbox: Sandbox | None = None) -> None:
        self._uploads = uploads
        self._registration = registration
        self._max_bytes = max_bytes
        self._sandbox = sandbox or Sandbox()  # the file is parsed in a limited child interpreter

    def check(self, upload_id: int, *, stop_after: int | None = None) -> Upload | None:
        """Read the whole file; keep the validation report and the rejected rows.

        Runs only on an upload in "checking" (else returns it unchanged). With ``stop_after``,
        gives up (returns None, the upload still "checking") once the file holds more numbers:
        a request checks small files itself and hands bigger ones to a job."""
        uploads = self._uploads
        upload = uploads.get(upload_id)
        if upload is None or upload.state != "checking":
            return upload
        repeat = self._registration.find_repeat(institution_id=upload.institution_id,
                                                quarter=Quarter.parse(upload.quarter), sha256=upload.sha256)
        uploads.report_progress(upload, 0)
        try:
            with open(uploads.path(upload), "rb") as fh, \
                    self._sandbox.report_numbers(fh, upload.file_name, max_bytes=self._max_bytes) as parsed:
                count = 0
                for _ in parsed.numbers():
                    count += 1
                    if stop_after is not None and count > stop_after:
                        return None
                    if count % PROGRESS_EVERY == 0:
                        uploads.report_progress(upload, count)
        except FileRefused as exc:
            uploads.transition(upload_id, "checking", "refused", progress=0,
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
        uploads.transition(upload_id, "checking", "ready", progress=0, report=report)
        return uploads.get(upload_id)

    def import_(self, upload_id: int, *, registration: RegistrationService | None = None,
                claimed: bool = False) -> Receipt | None:
        """Register a checked upload as one batch (all or nothing).

        The caller has moved it to "importing" (``claimed``), or this moves it there from
        "queued"; when another request or job got there first, nothing happens (None). The same
        file already registered (by an earlier upload, or a concurrent one) gives the earlier
        receipt, and the upload is done with it. A job passes a registration service judging
        lateness at the moment the uploader confirmed."""
        uploads = self._uploads
        if not claimed and not uploads.transition(upload_id, "queued", "importing", progress=0):
            return None
        upload = uploads.get(upload_id)
        uploads.report_progress(upload, 0)
        try:
            with open(uploads.path(upload), "rb") as fh:
                done = register_number_file(
                    registration or self._registration, fh, file_name=upload.file_name,
                    institution_id=upload.institution_id, quarter=Quarter.parse(upload.quarter), source="file",
                    created_by=upload.uploaded_by, max_bytes=self._max_bytes, sha256=upload.sha256,
                    progress=lambda n: uploads.report_progress(upload, n), sandbox=self._sandbox)
        except RegistrationRefused as exc:
            uploads.mark_failed(upload_id, f"{exc.message_zh} / {exc.message_en}", expected="importing")
            raise
        except Exception as exc:
            log.exception("import of upload %s failed", upload_id)
            uploads.mark_failed(upload_id, f"{exc.__class__.__name__}", expected="importing")
            raise
        receipt = done.receipt
        uploads.finish(upload_id, batch_id=receipt.batch_id, progress=receipt.accepted + receipt.duplicates)
        uploads.progress_path(upload).unlink(missing_ok=True)
        return receipt

    def retry(self, upload_id: int) -> str | None:
        """Start a stuck or failed upload again: "check" or "import" (the job to queue), or None
        when it is neither (or another request retried it first). An upload already registered
        under the same file is done at once (returns None)."""
        uploads = self._uploads
        upload = uploads.get(upload_id)
        if upload is None:
            return None
        if not (uploads.is_stuck(upload) or upload.state == "failed"):
            return None
        if upload.report is None or upload.state == "checking":
            ok = uploads.transition(upload_id, upload.state, "checking", updated_at=upload.updated_at,
                                    progress=0, error=None)
            return "check" if ok else None
        repeat = self._registration.find_repeat(institution_id=upload.institution_id,
                                                quarter=Quarter.parse(upload.quarter), sha256=upload.sha256)
        if repeat is not None:
            if uploads.transition(upload_id, upload.state, "done", updated_at=upload.updated_at,
                                  batch_id=repeat.batch_id, error=None):
                uploads.progress_path(upload).unlink(missing_ok=True)
            return None
        ok = uploads.transition(upload_id, upload.state, "queued", updated_at=upload.updated_at, progress=0, error=None)
        return "import" if ok else None

    def cancel(self, upload_id: int) -> bool:
        """Cancel an upload not registered: waiting for confirmation, refused, failed or stuck.
        Its file is deleted. False when it is in none of these states (or changed meanwhile)."""
        uploads = self._uploads
        upload = uploads.get(upload_id)
        if upload is None:
            return False
        if upload.state in ("ready", "refused", "failed"):
            ok = uploads.transition(upload_id, upload.state, "cancelled")
        elif uploads.is_stuck(upload):
            ok = uploads.transition(upload_id, upload.state, "cancelled", updated_at=upload.updated_at)
        else:
            ok = False
        if ok:
            uploads.path(upload).unlink(missing_ok=True)
            uploads.progress_path(upload).unlink(missing_ok=True)
        return ok

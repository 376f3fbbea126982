"""The two steps of a portal upload: check the stored file, then (once confirmed) register it.

``check`` reads the whole file without registering anything and keeps the validation report
(the column read, a sample of the numbers, counts — numbers read, duplicates within the file,
numbers this institution registered already, new numbers —, first rejected rows, warnings, an
earlier registration of the same file) and the rejected rows as CSV, so the receipt holds no
surprise. ``import_`` registers the file through the one file → batch flow
(workflows/numbers.py). Either runs within the request or as a job (workflows/jobs.py).
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator

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
SAMPLE_NUMBERS = 10
COUNT_SLICE = 50_000  # distinct numbers per call counting those registered (a heartbeat after each)


class DistinctNumbers:
    """The distinct numbers of a file, kept in a private temporary SQLite database (on disk,
    with a bounded cache), so that a file of a million numbers is told apart from its duplicates
    in bounded memory. Close it (or use it as a context manager) to delete it."""

    BATCH = 10_000

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # "": a temporary database, deleted when closed
        self._db.execute("PRAGMA cache_size = -32768")  # at most 32 MiB of pages in memory
        self._db.execute("CREATE TABLE numbers (number TEXT PRIMARY KEY) WITHOUT ROWID")
        self._pending: list[str] = []

    def add(self, number: str) -> None:
        self._pending.append(number)
        if len(self._pending) >= self.BATCH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._db.executemany("INSERT OR IGNORE INTO numbers (number) VALUES (?)", zip(self._pending))
            self._pending.clear()

    def count(self) -> int:
        self._flush()
        return self._db.execute("SELECT count(*) FROM numbers").fetchone()[0]

    def slices(self, size: int) -> Iterator[list[str]]:
        self._flush()
        cursor = self._db.execute("SELECT number FROM numbers")
        while rows := cursor.fetchmany(size):
            yield [row[0] for row in rows]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "DistinctNumbers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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
        fingerprinted = 0  # numbers with a document fingerprint (文件摘要)
        with DistinctNumbers() as distinct:
            sample: list[str] = []
            try:
                with open(uploads.path(upload), "rb") as fh, \
                        self._sandbox.report_numbers(fh, upload.file_name, max_bytes=self._max_bytes) as parsed:
                    count = 0
                    documents = parsed.documents  # filled before the numbers they belong to
                    for number in parsed.numbers():
                        count += 1
                        if documents:  # counted and let go: a file's fingerprints are not held in memory
                            fingerprinted += len(documents)
                            documents.clear()
                        if stop_after is not None and count > stop_after:
                            return None
                        if count <= SAMPLE_NUMBERS:
                            sample.append(number)
                        distinct.add(number)
                        if count % PROGRESS_EVERY == 0:
                            uploads.report_progress(upload, count)
            except FileRefused as exc:
                uploads.transition(upload_id, "checking", "refused", progress=0,
                                   report={"refused": {"code": exc.code, "zh": exc.message_zh, "en": exc.message_en}})
                return uploads.get(upload_id)
            unique = distinct.count()
            registered = 0
            for part in distinct.slices(COUNT_SLICE):  # chunked set queries; the heartbeat goes on
                registered += self._registration.count_registered(upload.institution_id, part)
                uploads.report_progress(upload, count)
        write_rejected_csv(uploads.rejected_path(upload), parsed.problems)
        report = {
            "rows": parsed.rows,
            "numbers": count,
            "in_file_duplicates": count - unique,
            "already_registered": registered,
            "new": unique - registered,
            "documents": fingerprinted,
            "sample": sample,
            "column": parsed.column,
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

"""Uploads awaiting confirmation and the background jobs that check and import them.

A portal upload is stored under FILES_DIR with a random name, checked (the importers' validation
report: counts, first rejected rows, warnings) and registered only once the uploader confirms.
Small files are handled within the request; big ones by a job: on an RQ queue when Redis is
configured (any host's worker may run it, so the job rebuilds its own :class:`Registry` from
settings), otherwise on a thread of the web process. Both sit behind :class:`JobQueue`.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import threading
from pathlib import Path
from typing import BinaryIO, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.registration.models import Upload
from registry.numbers.quarters import Clock, Quarter, system_clock
from registry.registration.service import Receipt, RegistrationRefused, RegistrationService

log = logging.getLogger(__name__)

PREVIEW_PROBLEMS = 20
PROGRESS_EVERY = 50_000
QUEUE_NAME = "rnr-imports"
SUFFIXES = {".csv", ".txt", ".xlsx", ".xls", ".tsv"}


class UploadService:
    """Stores, checks and imports portal uploads; the state lives in the ``uploads`` table."""

    def __init__(self, *, sessions: sessionmaker[Session], registration: RegistrationService, files_dir: Path,
                 clock: Clock = system_clock, max_bytes: int = 200 * 1024 * 1024) -> None:
        self._sessions = sessions
        self._registration = registration
        self._dir = Path(files_dir) / "uploads"
        self._clock = clock
        self._max_bytes = max_bytes

    # --- files -----------------------------------------------------------------------------
    def path(self, upload: Upload) -> Path:
        return self._dir / upload.stored_name

    def progress_path(self, upload: Upload) -> Path:
        return self._dir / f"{upload.stored_name}.progress"

    def progress(self, upload: Upload) -> int:
        """Numbers read so far by the running step. Kept in a file beside the upload, not in the
        database: on SQLite the import's own transaction holds the write lock until it ends."""
        try:
            return int(self.progress_path(upload).read_text() or 0)
        except (OSError, ValueError):
            return 0

    def _report_progress(self, upload: Upload, done: int) -> None:
        path = self.progress_path(upload)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(str(done))
        tmp.replace(path)

    def rejected_path(self, upload: Upload) -> Path:
        return self._dir / f"{upload.stored_name}.rejected.csv"

    def store(self, fileobj: BinaryIO, *, file_name: str, institution_id: int, quarter: Quarter,
              uploaded_by: str) -> Upload:
        """Copy the upload to a random name under FILES_DIR, hashing it on the way."""
        self._dir.mkdir(parents=True, exist_ok=True)
        suffix = Path(file_name).suffix.lower()
        stored = secrets.token_hex(16) + (suffix if suffix in SUFFIXES else "")
        digest, size = hashlib.sha256(), 0
        with open(self._dir / stored, "wb") as out:
            while block := fileobj.read(1 << 20):
                digest.update(block)
                size += len(block)
                out.write(block)
        now = self._clock()
        with self._sessions() as session:
            upload = Upload(key=secrets.token_urlsafe(16)[:22], institution_id=institution_id, quarter=str(quarter),
                            file_name=Path(file_name).name[:255] or "upload", stored_name=stored, size=size,
                            sha256=digest.hexdigest(), uploaded_by=uploaded_by, state="checking", progress=0,
                            created_at=now, updated_at=now)
            session.add(upload)
            session.commit()
            return upload

    def get(self, upload_id: int) -> Upload | None:
        with self._sessions() as session:
            return session.get(Upload, upload_id)

    def for_batch(self, batch_id: int) -> Upload | None:
        with self._sessions() as session:
            return session.scalar(select(Upload).where(Upload.batch_id == batch_id).order_by(Upload.id.desc()))

    def _set(self, upload_id: int, **values) -> None:
        with self._sessions() as session:
            session.execute(update(Upload).where(Upload.id == upload_id).values(updated_at=self._clock(), **values))
            session.commit()

    # --- the two steps ---------------------------------------------------------------------
    def check(self, upload_id: int) -> Upload:
        """Read the whole file without registering anything; keep the validation report and the
        rejected rows (as CSV). An earlier registration of the same file is noted too."""
        from importers.errors import FileRefused
        from importers.numbers import read_report_numbers

        upload = self.get(upload_id)
        repeat = self._registration.find_repeat(institution_id=upload.institution_id,
                                                quarter=Quarter.parse(upload.quarter), sha256=upload.sha256)
        try:
            with open(self.path(upload), "rb") as fh:
                parsed = read_report_numbers(fh, upload.file_name, max_bytes=self._max_bytes)
                count = 0
                for _ in parsed.numbers():
                    count += 1
                    if count % PROGRESS_EVERY == 0:
                        self._report_progress(upload, count)
        except FileRefused as exc:
            self._set(upload_id, state="refused", progress=0,
                      report={"refused": {"code": exc.code, "zh": exc.message_zh, "en": exc.message_en}})
            return self.get(upload_id)
        write_rejected_csv(self.rejected_path(upload), parsed.problems)
        report = {
            "rows": parsed.rows,
            "numbers": count,
            "rejected": len(parsed.problems),
            "problems": [problem_json(p) for p in parsed.problems[:PREVIEW_PROBLEMS]],
            "warnings": [{"code": w.code, "zh": w.message_zh, "en": w.message_en} for w in parsed.warnings],
            "repeat_batch_id": repeat.batch_id if repeat else None,
        }
        self._set(upload_id, state="ready", progress=0, report=report)
        return self.get(upload_id)

    def import_(self, upload_id: int, *, registration: RegistrationService | None = None) -> Receipt:
        """Register a checked upload as one batch (all or nothing)."""
        from importers.numbers import read_report_numbers

        registration = registration or self._registration
        upload = self.get(upload_id)
        self._report_progress(upload, 0)
        self._set(upload_id, state="importing", progress=0)
        try:
            with open(self.path(upload), "rb") as fh:
                parsed = read_report_numbers(fh, upload.file_name, max_bytes=self._max_bytes)
                receipt = registration.register(
                    institution_id=upload.institution_id, quarter=Quarter.parse(upload.quarter),
                    numbers=parsed.numbers(), sha256=upload.sha256, source="file", file_name=upload.file_name,
                    created_by=upload.uploaded_by, rejected=lambda: len(parsed.problems),
                    progress=lambda done: self._report_progress(upload, done),
                )
        except RegistrationRefused as exc:
            self._set(upload_id, state="failed", error=f"{exc.message_zh} / {exc.message_en}")
            raise
        except Exception as exc:
            log.exception("import of upload %s failed", upload_id)
            self._set(upload_id, state="failed", error=f"{exc.__class__.__name__}")
            raise
        self._set(upload_id, state="done", batch_id=receipt.batch_id, progress=receipt.accepted + receipt.duplicates)
        self.progress_path(upload).unlink(missing_ok=True)
        return receipt

    def mark_queued(self, upload_id: int, state: str) -> None:
        self._set(upload_id, state=state, progress=0)

    def mark_failed(self, upload_id: int, error: str) -> None:
        self._set(upload_id, state="failed", error=error[:500])


def problem_json(p) -> dict:
    return {"line": p.line, "location": p.location, "value": p.raw, "code": p.code,
            "reason": p.message_zh, "reason_en": p.message_en}


def write_rejected_csv(path: Path, problems) -> None:
    """The rejected rows in the CLI's ``--rejected-csv`` layout (UTF-8 with BOM, for Excel)."""
    with open(path, "w", newline="", encoding="utf-8-sig") as fh:
        writer = csv.writer(fh)
        writer.writerow(["line", "location", "value", "code", "reason", "reason_en"])
        for p in problems:
            writer.writerow([p.line or "", p.location or "", p.raw, p.code, p.message_zh, p.message_en])


# --- running jobs ----------------------------------------------------------------------------
def run_upload_job(uploads: UploadService, registration: RegistrationService, kind: str, upload_id: int) -> None:
    """One job: ``check`` an upload, or ``import`` a confirmed one. Failures are kept on the upload."""
    try:
        if kind == "check":
            uploads.check(upload_id)
        elif kind == "import":
            uploads.import_(upload_id, registration=registration)
        else:
            raise ValueError(f"unknown job kind {kind!r}")
    except RegistrationRefused:
        pass  # kept on the upload by import_
    except Exception as exc:  # noqa: BLE001 - the page shows it; the log has the trace
        log.exception("upload job %s %s failed", kind, upload_id)
        uploads.mark_failed(upload_id, exc.__class__.__name__)


def frozen_clock(moment: dt.datetime) -> Clock:
    """Lateness is judged when the uploader confirmed, not when a worker got round to it."""
    return lambda: moment


class JobQueue(Protocol):
    def enqueue(self, kind: str, upload_id: int, *, confirmed_at: dt.datetime) -> None: ...


class ThreadQueue:
    """Embedded mode: the job runs on a daemon thread of this process, on this process's registry."""

    def __init__(self, registry, *, max_bytes: int) -> None:
        self._registry = registry
        self._max_bytes = max_bytes
        self.threads: list[threading.Thread] = []

    def enqueue(self, kind: str, upload_id: int, *, confirmed_at: dt.datetime) -> None:
        reg = self._registry
        registration = RegistrationService(sessions=reg.sessions, bloom=reg.bloom, clock=frozen_clock(confirmed_at))
        uploads = upload_service(reg, max_bytes=self._max_bytes)
        thread = threading.Thread(target=run_upload_job, args=(uploads, registration, kind, upload_id),
                                  name=f"upload-{kind}-{upload_id}", daemon=True)
        self.threads = [t for t in self.threads if t.is_alive()] + [thread]
        thread.start()


class RQQueue:
    """Production: an RQ queue on the registry's Redis; ``rq worker rnr-imports`` runs the jobs."""

    def __init__(self, registry, *, max_bytes: int) -> None:
        import rq

        self._settings = dataclasses.asdict(registry.settings)
        self._settings["secret_key"] = ""  # not needed by an import; keep it out of Redis
        self._max_bytes = max_bytes
        self.queue = rq.Queue(QUEUE_NAME, connection=registry.redis)

    def enqueue(self, kind: str, upload_id: int, *, confirmed_at: dt.datetime) -> None:
        self.queue.enqueue(rq_upload_job, self._settings, kind, upload_id, confirmed_at.isoformat(), self._max_bytes,
                           job_timeout=3600, failure_ttl=7 * 24 * 3600)


def rq_upload_job(settings: dict, kind: str, upload_id: int, confirmed_at: str, max_bytes: int) -> None:
    """The RQ entry point: build a registry from settings, run the job, close it."""
    from registry.runtime import Registry, RuntimeSettings

    values = dict(settings)
    for name in ("bloom_dir", "files_dir"):
        values[name] = Path(values[name])
    reg = Registry(RuntimeSettings(**values))
    try:
        registration = RegistrationService(sessions=reg.sessions, bloom=reg.bloom,
                                           clock=frozen_clock(dt.datetime.fromisoformat(confirmed_at)))
        run_upload_job(upload_service(reg, max_bytes=max_bytes), registration, kind, upload_id)
    finally:
        reg.close()


def upload_service(reg, *, clock: Clock | None = None, max_bytes: int = 200 * 1024 * 1024) -> UploadService:
    return UploadService(sessions=reg.sessions, registration=reg.registration, files_dir=reg.settings.files_dir,
                         clock=clock or reg.clock, max_bytes=max_bytes)


def make_job_queue(registry, *, max_bytes: int) -> JobQueue:
    return RQQueue(registry, max_bytes=max_bytes) if registry.redis is not None else ThreadQueue(registry, max_bytes=max_bytes)


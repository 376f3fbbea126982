"""Portal uploads awaiting confirmation: the stored file and its state in the ``uploads`` table.

A portal upload is stored under FILES_DIR with a random name, checked and registered only once
the uploader confirms; reading the file and running the steps is workflows/uploads.py's job.

Every change of state is a guarded transition (``UPDATE … WHERE state = <expected>``, the row
count tells whether this caller made it), so two requests or jobs never both act on one upload.
A step that runs writes a heartbeat beside the file; an upload "checking", "queued" or
"importing" with no sign of life for ``stuck_after`` is stuck and may be retried or cancelled.
Files of finished uploads are deleted ``keep_files`` after their last change.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.registration.models import Upload
from registry.numbers.quarters import Clock, Quarter, system_clock

SUFFIXES = {".csv", ".txt", ".xlsx", ".xls", ".tsv"}
WORKING = ("checking", "queued", "importing")
FINISHED = ("done", "cancelled", "failed", "refused")
DEFAULT_STUCK_AFTER = dt.timedelta(minutes=15)
DEFAULT_KEEP_FILES = dt.timedelta(days=90)


class UploadService:
    """Stores portal uploads and keeps their state in the ``uploads`` table."""

    def __init__(self, *, sessions: sessionmaker[Session], files_dir: Path, clock: Clock = system_clock,
                 stuck_after: dt.timedelta = DEFAULT_STUCK_AFTER, keep_files: dt.timedelta = DEFAULT_KEEP_FILES) -> None:
        self._sessions = sessions
        self._dir = Path(files_dir) / "uploads"
        self._clock = clock
        self.stuck_after = stuck_after
        self.keep_files = keep_files

    # --- files -----------------------------------------------------------------------------
    def path(self, upload: Upload) -> Path:
        return self._dir / upload.stored_name

    def progress_path(self, upload: Upload) -> Path:
        return self._dir / f"{upload.stored_name}.progress"

    def _heartbeat(self, upload: Upload) -> tuple[int, dt.datetime | None]:
        try:
            count, _, moment = self.progress_path(upload).read_text().partition(" ")
            return int(count or 0), (dt.datetime.fromisoformat(moment.strip()) if moment.strip() else None)
        except (OSError, ValueError):
            return 0, None

    def progress(self, upload: Upload) -> int:
        """Numbers read so far by the running step. Kept in a file beside the upload, not in the
        database: on SQLite the import's own transaction holds the write lock until it ends."""
        return self._heartbeat(upload)[0]

    def report_progress(self, upload: Upload, done: int) -> None:
        """The running step's progress and heartbeat (the time it was last heard of)."""
        path = self.progress_path(upload)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{done} {self._clock().isoformat()}")
        tmp.replace(path)

    def last_seen(self, upload: Upload) -> dt.datetime:
        """When the upload last changed state or its running step last reported."""
        beat = self._heartbeat(upload)[1]
        seen = _aware(upload.updated_at)
        return max(seen, _aware(beat)) if beat is not None else seen

    def is_stuck(self, upload: Upload) -> bool:
        """Working (checking, queued, importing) with no sign of life for ``stuck_after``: its
        job died with its worker, or was never queued."""
        return upload.state in WORKING and self._clock() - self.last_seen(upload) > self.stuck_after

    def rejected_path(self, upload: Upload) -> Path:
        return self._dir / f"{upload.stored_name}.rejected.csv"

    def store(self, fileobj: BinaryIO, *, file_name: str, institution_id: int, quarter: Quarter,
              uploaded_by: str) -> Upload:
        """Copy the upload to a random name under FILES_DIR, hashing it on the way. Raises
        ``OSError`` (a full disk) with nothing stored."""
        self._dir.mkdir(parents=True, exist_ok=True)
        suffix = Path(file_name).suffix.lower()
        stored = secrets.token_hex(16) + (suffix if suffix in SUFFIXES else "")
        digest, size = hashlib.sha256(), 0
        try:
            with open(self._dir / stored, "wb") as out:
                while block := fileobj.read(1 << 20):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        except BaseException:  # a full disk (OSError): no partial file is left, no upload recorded
            (self._dir / stored).unlink(missing_ok=True)
            raise
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

    def transition(self, upload_id: int, expected: str | tuple[str, ...], state: str, *,
                   updated_at: dt.datetime | None = None, **values) -> bool:
        """Move the upload from one of the ``expected`` states to ``state`` (and set ``values``),
        in one guarded ``UPDATE``; ``updated_at`` also requires the row unchanged since then.
        True when this call made the change, False when the upload was elsewhere."""
        expected = (expected,) if isinstance(expected, str) else tuple(expected)
        where = [Upload.id == upload_id, Upload.state.in_(expected)]
        if updated_at is not None:
            where.append(Upload.updated_at == updated_at)
        with self._sessions() as session:
            changed = session.execute(
                update(Upload).where(*where).values(state=state, updated_at=self._clock(), **values)
                .execution_options(synchronize_session=False)).rowcount
            session.commit()
        return changed == 1

    def finish(self, upload_id: int, *, batch_id: int, progress: int) -> None:
        """The upload's numbers are registered as ``batch_id``: it is done, whatever it showed
        meanwhile (a retried or cancelled job that still got there)."""
        self.transition(upload_id, ("checking", "ready", "queued", "importing", "failed", "cancelled"), "done",
                        batch_id=batch_id, progress=progress, error=None)

    def mark_failed(self, upload_id: int, error: str, *, expected: str | tuple[str, ...] = WORKING) -> bool:
        return self.transition(upload_id, expected, "failed", error=error[:500])

    # --- stored files past their keeping period --------------------------------------------
    def delete_old_files(self, limit: int = 500) -> int:
        """Delete the files of uploads finished (or left unconfirmed) longer than ``keep_files``
        ago; an unconfirmed one becomes "cancelled". Returns how many uploads lost their files."""
        cutoff = self._clock() - self.keep_files
        with self._sessions() as session:
            old = session.scalars(
                select(Upload).where(Upload.state.in_(FINISHED + ("ready",)), Upload.updated_at < cutoff,
                                     Upload.files_deleted_at.is_(None)).order_by(Upload.id).limit(limit)).all()
        deleted = 0
        for upload in old:
            if upload.state == "ready" and not self.transition(upload.id, "ready", "cancelled",
                                                               updated_at=upload.updated_at):
                continue
            for path in (self.path(upload), self.rejected_path(upload), self.progress_path(upload)):
                path.unlink(missing_ok=True)
            with self._sessions() as session:
                session.execute(update(Upload).where(Upload.id == upload.id).values(files_deleted_at=self._clock())
                                .execution_options(synchronize_session=False))
                session.commit()
            deleted += 1
        return deleted


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.timezone.utc)

"""Portal uploads awaiting confirmation: the stored file and its state in the ``uploads`` table.

A portal upload is stored under FILES_DIR with a random name, checked and registered only once
the uploader confirms; reading the file and running the steps is workflows/uploads.py's job.
"""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.registration.models import Upload
from registry.numbers.quarters import Clock, Quarter, system_clock

SUFFIXES = {".csv", ".txt", ".xlsx", ".xls", ".tsv"}


class UploadService:
    """Stores portal uploads and keeps their state in the ``uploads`` table."""

    def __init__(self, *, sessions: sessionmaker[Session], files_dir: Path, clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._dir = Path(files_dir) / "uploads"
        self._clock = clock

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

    def report_progress(self, upload: Upload, done: int) -> None:
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

    def update(self, upload_id: int, **values) -> None:
        """Set columns of the upload (``updated_at`` too)."""
        with self._sessions() as session:
            session.execute(update(Upload).where(Upload.id == upload_id).values(updated_at=self._clock(), **values))
            session.commit()

    def mark_queued(self, upload_id: int, state: str) -> None:
        self.update(upload_id, state=state, progress=0)

    def mark_failed(self, upload_id: int, error: str) -> None:
        self.update(upload_id, state="failed", error=error[:500])

"""Attachments kept for a complainant between a refused submission and the next one.

A server cannot put a file back into a form's file input, so a valid attachment of a submission
refused for another reason (a missing description, say) is kept under ``FILES_DIR/complaints-kept/``
with a random name for :data:`KEEP_SECONDS`; the form shows it as kept and the next submission
claims it (moves it beside the other attachments) or drops it. Files not claimed in time are
deleted by :func:`purge_kept` (each keep, and the hourly upkeep). Flask-free.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import BinaryIO

from registry.complaints.service import MAX_ATTACHMENT_BYTES, StoredAttachment, store_attachment

KEPT_FOLDER = "complaints-kept"
KEEP_SECONDS = 60 * 60
_NAME = re.compile(r"^[0-9a-f]{32}\.(jpg|png|pdf)$")
_TYPES = {"jpg": "image/jpeg", "png": "image/png", "pdf": "application/pdf"}


def keep_attachment(stream: BinaryIO, files_dir: Path, *, max_bytes: int = MAX_ATTACHMENT_BYTES) -> StoredAttachment:
    """Check the file as :func:`store_attachment` does and keep it; its file name is the token.

    Raises :class:`~registry.complaints.service.AttachmentRefused`."""
    purge_kept(files_dir)
    return store_attachment(stream, files_dir, max_bytes=max_bytes, folder_name=KEPT_FOLDER)


def _kept_path(files_dir: Path, name: str) -> Path | None:
    if not _NAME.match(name or ""):
        return None
    path = files_dir / KEPT_FOLDER / name
    return path if path.is_file() else None


def kept_size(files_dir: Path, name: str) -> int | None:
    path = _kept_path(files_dir, name)
    return path.stat().st_size if path else None


def claim_kept(files_dir: Path, name: str, *, now: float | None = None) -> StoredAttachment | None:
    """Move a kept file beside the complaints' attachments; None when it is unknown or expired."""
    path = _kept_path(files_dir, name)
    if path is None:
        return None
    if (now or time.time()) - path.stat().st_mtime > KEEP_SECONDS:
        path.unlink(missing_ok=True)
        return None
    folder = files_dir / "complaints"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.rename(path, folder / name)  # atomic: a kept file is claimed once
    except FileNotFoundError:
        return None
    return StoredAttachment(path=f"complaints/{name}", content_type=_TYPES[name.rsplit(".", 1)[1]])


def drop_kept(files_dir: Path, name: str) -> None:
    path = _kept_path(files_dir, name)
    if path is not None:
        path.unlink(missing_ok=True)


def purge_kept(files_dir: Path, *, now: float | None = None) -> int:
    """Delete kept files older than KEEP_SECONDS; returns how many."""
    folder = files_dir / KEPT_FOLDER
    if not folder.is_dir():
        return 0
    limit, removed = (now or time.time()) - KEEP_SECONDS, 0
    for entry in os.scandir(folder):
        try:
            if entry.is_file() and entry.stat().st_mtime < limit:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass
    return removed


__all__ = ["KEEP_SECONDS", "KEPT_FOLDER", "claim_kept", "drop_kept", "keep_attachment", "kept_size", "purge_kept"]

"""Answers of a form awaiting confirmation on its check page (the check-answers pattern), for
actions that cannot be undone: one JSON file each under ``FILES_DIR/pending-forms/``, named by a
random key, bound to the account and the object it is about, kept at most a day. A file, not the
session cookie: a casework note may hold 4,000 characters, and every host shares ``FILES_DIR``."""
from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from pathlib import Path


class PendingForms:
    def __init__(self, files_dir: Path, *, keep: dt.timedelta = dt.timedelta(days=1),
                 folder: str = "pending-forms") -> None:
        self._dir = Path(files_dir) / folder
        self._keep = keep

    def save(self, *, owner: str, subject: str, values: dict) -> str:
        """Keep ``values`` (JSON-able) for ``owner`` about ``subject``; returns the key."""
        self._dir.mkdir(parents=True, exist_ok=True)
        self.delete_old()
        key = secrets.token_urlsafe(18)
        tmp = self._dir / f"{key}.tmp"
        tmp.write_text(json.dumps({"owner": owner, "subject": subject, "values": values}, ensure_ascii=False))
        tmp.replace(self._dir / f"{key}.json")
        return key

    def _path(self, key: str) -> Path | None:
        if not key or len(key) > 64 or not all(c.isalnum() or c in "-_" for c in key):
            return None
        return self._dir / f"{key}.json"

    def load(self, key: str, *, owner: str, subject: str) -> dict | None:
        """The values kept under ``key`` for this owner and subject, or None (unknown, expired,
        someone else's, about something else)."""
        path = self._path(key)
        try:
            if path is None or time.time() - path.stat().st_mtime > self._keep.total_seconds():
                return None
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if body.get("owner") != owner or body.get("subject") != subject:
            return None
        return body.get("values") or {}

    def take(self, key: str, *, owner: str, subject: str) -> dict | None:
        """Load and remove: of two confirmations of one check page, only one gets the values."""
        values = self.load(key, owner=owner, subject=subject)
        if values is None:
            return None
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return None  # another request took it first
        return values

    def discard(self, key: str) -> None:
        path = self._path(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def delete_old(self) -> None:
        if not self._dir.exists():
            return
        cutoff = time.time() - self._keep.total_seconds()
        for path in self._dir.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                continue

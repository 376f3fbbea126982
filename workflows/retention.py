"""Retention of personal data, the daily chore (docs/operations.md, "Retention").

- The query log keeps ``QUERY_LOG_DAYS`` days (default 180): older days are dropped as whole
  partitions on PostgreSQL (and the next days' partitions made ahead), deleted in bounded batches
  on SQLite.
- Sent and failed e-mails leave the outbox ``OUTBOX_DAYS`` days (default 90) after they were queued
  (their recipients and bodies are personal data); signed-out and expired sign-in sessions and
  stale failed-sign-in counts go at once (they open nothing any more).
- A complainant's name and contact are erased ``COMPLAINT_CONTACT_DAYS`` days (default 1095,
  three years) after their complaint was closed, each as a sealed ``personal_data_redacted``
  event, so the audit chain still verifies; the complaint, its finding and every statistic stay.

Every web process runs it once a day from its upkeep loop; one at a time does the work (an
advisory lock on PostgreSQL, a file lock on the embedded default), the others skip.
``flask --app wsgi retention run`` runs it at once (after a restore, from cron).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, text

from registry.accounts.accounts import AccountService
from registry.complaints.service import ComplaintService
from registry.notifications.outbox import Outbox
from registry.numbers.quarters import Clock
from registry.verification.querylog import QueryLogDays

log = logging.getLogger(__name__)
_LOCK_KEY = "rnr:retention"


@dataclass(frozen=True)
class RetentionFigures:
    ran: bool  # False: another process held the lock
    partitions_created: int = 0
    partitions_dropped: int = 0
    query_rows_deleted: int = 0
    contacts_erased: int = 0
    messages_deleted: int = 0
    sessions_deleted: int = 0


class Retention:
    def __init__(self, *, engine: Engine, days: QueryLogDays, complaints: ComplaintService, clock: Clock,
                 query_log_days: int, complaint_contact_days: int, lock_dir: Path,
                 outbox: Outbox, accounts: AccountService, outbox_days: int) -> None:
        self._engine = engine
        self._outbox = outbox
        self._accounts = accounts
        self.outbox_days = outbox_days
        self._days = days
        self._complaints = complaints
        self._clock = clock
        self.query_log_days = query_log_days
        self.complaint_contact_days = complaint_contact_days
        self._lock_path = Path(lock_dir) / "retention.lock"

    def run(self) -> RetentionFigures:
        with self._exclusive() as mine:
            if not mine:
                log.info("retention: another process is running it")
                return RetentionFigures(ran=False)
            now = self._clock()
            logged = self._days.maintain(today=now.astimezone(dt.timezone.utc).date(), keep_days=self.query_log_days)
            erased = 0
            closed_before = now - dt.timedelta(days=self.complaint_contact_days)
            while True:  # bounded batches, each its own transactions
                n = self._complaints.erase_expired_contacts(closed_before=closed_before)
                erased += n
                if n == 0:
                    break
            messages = self._outbox.forget_done(days=self.outbox_days)
            sessions = self._accounts.forget_expired()
            figures = RetentionFigures(True, logged["created"], logged["dropped"], logged["deleted"], erased,
                                       messages, sessions)
            log.info("retention: %s", figures)
            return figures

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[bool]:
        if self._engine.dialect.name == "postgresql":
            with self._engine.connect() as conn:
                mine = bool(conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": _LOCK_KEY}).scalar())
                conn.commit()
                try:
                    yield mine
                finally:
                    if mine:
                        conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": _LOCK_KEY})
                        conn.commit()
            return
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

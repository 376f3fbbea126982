"""The per-process background loop: keep this process's view of the registry current.

Every few seconds: reload the institution directory when its version changed, compare the Bloom
marker with the newest batch (start a rebuild when the index lost bits), flush the query log, write this
process's figures for /metrics; once an hour, the hourly chores (deleting the files of uploads past their keeping period); once a
day (and when the process starts), the daily chores (the query log's partitions and the retention
of personal data, workflows/retention.py).
While the database is unreachable the marker check runs without it
(:meth:`registry.bloom.index.BloomIndex.check_marker_without_database`).
Started once per process (again in a forked child); the CLI and tests call
:meth:`Upkeep.wait_until_trusted` instead.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from registry.bloom.stores import RebuildInProgress
from registry.institutions.directory import InstitutionDirectory
from registry.registration.models import Batch
from registry.verification.querylog import QueryLogBuffer

log = logging.getLogger(__name__)


class Upkeep:
    def __init__(self, *, sessions: sessionmaker[Session], directory: InstitutionDirectory, bloom,
                 query_log: QueryLogBuffer, interval: float, hourly: Sequence[Callable[[], object]] = (),
                 daily: Sequence[Callable[[], object]] = (),
                 periodic: Sequence[tuple[float, Callable[[], object]]] = ()) -> None:
        self._sessions = sessions
        self._directory = directory
        self._bloom = bloom
        self._query_log = query_log
        self._interval = interval
        self._hourly = list(hourly)
        self._next_hourly = 0.0
        self._daily = list(daily)
        self._next_daily = 0.0
        # (every so many seconds, chore): the transparency log's integration on its key holder
        self._periodic = [[seconds, chore, 0.0] for seconds, chore in periodic]
        self._background_pid: int | None = None
        self._stop = threading.Event()
        self._rebuilding = threading.Lock()
        self.last_refresh_error: str | None = None

    # --- the periodic checks ----------------------------------------------------------------
    def refresh(self, *, auto_rebuild: bool = True) -> None:
        """Reload the directory if it changed; check the Bloom marker; rebuild if it lost bits."""
        try:
            with self._sessions() as session:
                self._directory.refresh(session)
                newest = session.scalar(select(func.max(Batch.id)))
        except Exception as exc:  # keep serving from what we have; readiness reports it
            self.last_refresh_error = f"{exc.__class__.__name__}: {exc}"
            log.warning("registry refresh failed: %s", self.last_refresh_error)
            # without the database, trust the index only where its store cannot have lost writes
            # since a database-backed check; then negatives keep answering (a worker started during
            # an outage included), and a Redis that restarted meanwhile is no longer trusted
            self._bloom.check_marker_without_database()
            return
        self._bloom.check_marker(newest)
        self.last_refresh_error = None
        if auto_rebuild and self._bloom.needs_rebuild:
            self.start_rebuild()

    def start_rebuild(self, *, wait: bool = False) -> None:
        if not self._rebuilding.acquire(blocking=False):
            return

        def run():
            try:
                log.warning("Bloom index untrusted: rebuilding from the database")
                figures = self._bloom.rebuild()
                log.warning("Bloom index rebuilt: %s", figures)
            except RebuildInProgress:  # another process started one first: its switch is adopted
                log.warning("Bloom rebuild already running in another process; "
                            "verification answers from the database until it switches")
            except Exception:
                log.exception("Bloom rebuild failed; verification keeps answering from the database")
            finally:
                self._rebuilding.release()

        if wait:
            run()
        else:
            threading.Thread(target=run, name="bloom-rebuild", daemon=True).start()

    @property
    def rebuilding(self) -> bool:
        return self._rebuilding.locked()

    def ensure_background(self) -> bool:
        """Start this process's loop once (after a fork, again in the child). True when it started
        a loop thread just now (the caller then closes the process's resources at exit)."""
        if self._background_pid == os.getpid():
            return False
        self._background_pid = os.getpid()
        if not self._directory.loaded:
            # this process answers its first request from a loaded directory and a checked index
            self.refresh()
        if self._interval <= 0:
            return False
        self._stop = threading.Event()
        threading.Thread(target=self._loop, name="registry-refresh", daemon=True).start()
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._query_log.flush()
            self.run_hourly()
            self.run_daily()
            self.run_periodic()
            self._stop.wait(self._interval)

    def run_hourly(self, *, force: bool = False) -> None:
        """Run the hourly chores when an hour has passed since they last ran (or ``force``)."""
        if not force and time.monotonic() < self._next_hourly:
            return
        self._next_hourly = time.monotonic() + 3600
        self._run("hourly", self._hourly)

    def run_daily(self, *, force: bool = False) -> None:
        """Run the daily chores when a day has passed since they last ran (or ``force``)."""
        if not force and time.monotonic() < self._next_daily:
            return
        self._next_daily = time.monotonic() + 86400
        self._run("daily", self._daily)

    @staticmethod
    def _run(kind: str, chores: list[Callable[[], object]]) -> None:
        for chore in chores:
            try:
                chore()
            except Exception:  # noqa: BLE001 - a chore failing must not stop the loop
                log.exception("%s chore %s failed", kind, getattr(chore, "__name__", chore))

    def run_periodic(self) -> None:
        """Run each periodic chore whose period has passed since it last ran."""
        for slot in self._periodic:
            seconds, chore, due = slot
            if time.monotonic() < due:
                continue
            slot[2] = time.monotonic() + seconds
            self._run("periodic", [chore])

    def stop(self) -> None:
        self._stop.set()

    def wait_until_trusted(self, timeout: float = 60.0) -> bool:
        """For the CLI and tests: check the index, rebuilding it here and now if it lost bits."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh(auto_rebuild=False)
            if self._bloom.needs_rebuild:
                self.start_rebuild(wait=True)
                continue
            if self._bloom.status().get("mode") == "bloom" or time.monotonic() > deadline:
                return self._bloom.status().get("mode") == "bloom"
            time.sleep(0.05)

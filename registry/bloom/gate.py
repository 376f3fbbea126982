"""The writer gate: writers hold it shared for their unit of work; a rebuild takes it exclusive as a
barrier (every writer that started before its announcement has committed) and for the switch.

PostgreSQL: a transaction-level shared advisory lock on the writer's session (released at commit);
the exclusive side takes the session-level lock on a connection of its own. SQLite (one host):
``flock`` on ``directory/writers.lock``, entered through ``directory/writers.turnstile`` so a waiting
rebuild is not starved by writers that keep re-taking the shared lock (``flock`` does not queue).
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from registry.infra.db import is_postgres

#: advisory lock key: "rnrbloom" as a big-endian int64.
ADVISORY_KEY = int.from_bytes(b"rnrbloom", "big")


class WriterGate:
    def __init__(self, *, engine, directory: Path):
        self._engine = engine
        self._postgres = is_postgres(engine)
        self._path = Path(directory) / "writers.lock"
        self._turnstile = Path(directory) / "writers.turnstile"

    @contextmanager
    def shared(self, session):
        if self._postgres:
            session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": ADVISORY_KEY})
            yield
            return
        with self._flock(self._turnstile, fcntl.LOCK_SH):
            fd = self._open(self._path)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
            except BaseException:
                os.close(fd)
                raise
        try:
            yield
        finally:
            os.close(fd)

    @contextmanager
    def exclusive(self):
        if self._postgres:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                    conn.commit()
            return
        with self._flock(self._turnstile, fcntl.LOCK_EX), self._flock(self._path, fcntl.LOCK_EX):
            yield

    def barrier(self) -> None:
        """Wait until every writer holding the gate now has finished."""
        with self.exclusive():
            pass

    @staticmethod
    def _open(path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o664)

    @contextmanager
    def _flock(self, path: Path, how: int):
        fd = self._open(path)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

"""The writer gate: writers hold it shared for their unit of work; a rebuild takes it exclusive as a
barrier (every writer that started before its announcement has committed) and for the switch.

PostgreSQL: a transaction-level shared advisory lock on the writer's session (released at commit);
the exclusive side takes the session-level lock on a connection of its own. SQLite (one host):
``flock`` on ``directory/writers.lock``.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text

from registry.db import is_postgres

#: advisory lock key: "rnrbloom" as a big-endian int64.
ADVISORY_KEY = int.from_bytes(b"rnrbloom", "big")


class WriterGate:
    def __init__(self, *, engine, directory: Path):
        self._engine = engine
        self._postgres = is_postgres(engine)
        self._path = Path(directory) / "writers.lock"

    @contextmanager
    def shared(self, session):
        if self._postgres:
            session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": ADVISORY_KEY})
            yield
            return
        with self._flock(fcntl.LOCK_SH):
            yield

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
        with self._flock(fcntl.LOCK_EX):
            yield

    def barrier(self) -> None:
        """Wait until every writer holding the gate now has finished."""
        with self.exclusive():
            pass

    @contextmanager
    def _flock(self, how: int):
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o664)
        try:
            fcntl.flock(fd, how)
            yield
        finally:
            os.close(fd)

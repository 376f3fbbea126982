"""Bulk loaders of report numbers: PostgreSQL COPY into staging tables, SQLite executemany.

A batch streams through in chunks. Each chunk is staged, its distinct numbers are added to a
per-batch "seen" table (so duplicates within the file are recognised across chunks) and the ones
new to the file are inserted with "do nothing on conflict". In-file duplicates and numbers
already registered are thus told apart in SQL, not in a Python set, and memory stays constant
whatever the file size. Everything runs inside the caller's transaction.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Protocol

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class LoadCounts:
    staged: int       # numbers handed over, duplicates included
    inserted: int     # newly registered
    in_file_duplicates: int
    already_registered: int


class NumberLoader(Protocol):
    def load(self, numbers: list[str]) -> None: ...
    def counts(self) -> LoadCounts: ...
    def finish(self) -> None: ...


class _Tally:
    def __init__(self) -> None:
        self.staged = self.distinct = self.inserted = 0

    def counts(self) -> LoadCounts:
        return LoadCounts(self.staged, self.inserted, self.staged - self.distinct, self.distinct - self.inserted)


class PostgresLoader(_Tally):
    """psycopg 3 COPY into temporary tables that live until the transaction ends."""

    def __init__(self, session: Session, *, institution_id: int, quarter: str, batch_id: int, registered_at: dt.datetime):
        super().__init__()
        self._raw = session.connection().connection.driver_connection
        self._params = {"iid": institution_id, "quarter": quarter, "batch": batch_id, "at": _naive_utc(registered_at)}
        with self._raw.cursor() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS stage_numbers (number text NOT NULL) ON COMMIT DROP")
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS stage_seen (number text PRIMARY KEY) ON COMMIT DROP")
            cur.execute("TRUNCATE stage_numbers, stage_seen")

    def load(self, numbers: list[str]) -> None:
        if not numbers:
            return
        with self._raw.cursor() as cur:
            cur.execute("TRUNCATE stage_numbers")
            # Normalised numbers never contain tab, newline or backslash: text format needs no escaping.
            with cur.copy("COPY stage_numbers (number) FROM STDIN") as copy:
                copy.write("\n".join(numbers) + "\n")
            cur.execute(
                "WITH fresh AS (INSERT INTO stage_seen (number) SELECT DISTINCT number FROM stage_numbers "
                "               ON CONFLICT DO NOTHING RETURNING number), "
                "     ins AS (INSERT INTO report_numbers (number, institution_id, quarter, batch_id, registered_at) "
                "             SELECT number, %(iid)s, %(quarter)s, %(batch)s, %(at)s FROM fresh "
                "             ON CONFLICT DO NOTHING RETURNING 1) "
                "SELECT (SELECT count(*) FROM fresh), (SELECT count(*) FROM ins)",
                self._params,
            )
            fresh, inserted = cur.fetchone()
        self.staged += len(numbers)
        self.distinct += fresh
        self.inserted += inserted

    def finish(self) -> None:
        """Nothing to do: the staging tables drop at commit."""


class SQLiteLoader(_Tally):
    """executemany into temporary tables inside the batch's one transaction."""

    def __init__(self, session: Session, *, institution_id: int, quarter: str, batch_id: int, registered_at: dt.datetime):
        super().__init__()
        self._raw = session.connection().connection.driver_connection
        self._params = (institution_id, quarter, batch_id, _naive_utc(registered_at).strftime("%Y-%m-%d %H:%M:%S.%f"))
        cur = self._raw.cursor()
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS stage_numbers (number TEXT NOT NULL)")
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS stage_seen (number TEXT PRIMARY KEY) WITHOUT ROWID")
        cur.execute("DELETE FROM stage_numbers")
        cur.execute("DELETE FROM stage_seen")
        cur.close()

    def load(self, numbers: list[str]) -> None:
        if not numbers:
            return
        cur = self._raw.cursor()
        cur.execute("DELETE FROM stage_numbers")
        cur.executemany("INSERT INTO stage_numbers (number) VALUES (?)", zip(numbers))
        before = self._raw.total_changes
        cur.execute("INSERT OR IGNORE INTO stage_seen (number) SELECT number FROM stage_numbers")
        fresh = self._raw.total_changes - before
        before = self._raw.total_changes
        cur.execute(
            "INSERT OR IGNORE INTO report_numbers (number, institution_id, quarter, batch_id, registered_at) "
            "SELECT DISTINCT s.number, ?, ?, ?, ? FROM stage_numbers s",
            self._params,
        )
        inserted = self._raw.total_changes - before
        cur.close()
        self.staged += len(numbers)
        self.distinct += fresh
        self.inserted += inserted

    def finish(self) -> None:
        """Empty the staging tables, which live as long as the pooled connection."""
        cur = self._raw.cursor()
        cur.execute("DELETE FROM stage_numbers")
        cur.execute("DELETE FROM stage_seen")
        cur.close()


def make_loader(session: Session, **batch) -> NumberLoader:
    if session.get_bind().dialect.name == "postgresql":
        return PostgresLoader(session, **batch)
    return SQLiteLoader(session, **batch)


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.timezone.utc).replace(tzinfo=None)


def chunked(items: Iterable[str], size: int) -> Iterable[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk

"""Bulk loaders of report numbers: PostgreSQL COPY into a staging table, SQLite executemany.

Both stage every number of a batch (duplicates included), then insert the distinct ones with
"do nothing on conflict", so in-file duplicates and already-registered numbers are told apart in
SQL, not in a Python set, and memory stays constant whatever the file size.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Protocol

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class LoadCounts:
    staged: int       # numbers handed over, duplicates included
    inserted: int     # newly registered
    in_file_duplicates: int
    already_registered: int


class NumberLoader(Protocol):
    def stage(self, numbers: list[str]) -> None: ...
    def finish(self, *, institution_id: int, quarter: str, batch_id: int, registered_at: dt.datetime) -> LoadCounts: ...


class PostgresLoader:
    """psycopg 3 COPY into a temporary table that lives until the transaction ends."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._staged = 0
        session.execute(text("CREATE TEMP TABLE IF NOT EXISTS stage_numbers (number text NOT NULL) ON COMMIT DROP"))
        session.execute(text("TRUNCATE stage_numbers"))
        self._raw = session.connection().connection.driver_connection

    def stage(self, numbers: list[str]) -> None:
        if not numbers:
            return
        # Normalised numbers never contain tab, newline or backslash, so text format needs no escaping.
        with self._raw.cursor() as cur:
            with cur.copy("COPY stage_numbers (number) FROM STDIN") as copy:
                copy.write("\n".join(numbers) + "\n")
        self._staged += len(numbers)

    def finish(self, *, institution_id, quarter, batch_id, registered_at) -> LoadCounts:
        distinct = self._session.execute(text("SELECT count(DISTINCT number) FROM stage_numbers")).scalar_one()
        result = self._session.execute(
            text(
                "INSERT INTO report_numbers (number, institution_id, quarter, batch_id, registered_at) "
                "SELECT DISTINCT number, :iid, :quarter, :batch, :at FROM stage_numbers "
                "ON CONFLICT DO NOTHING"
            ),
            {"iid": institution_id, "quarter": quarter, "batch": batch_id, "at": _naive_utc(registered_at)},
        )
        inserted = result.rowcount
        return LoadCounts(self._staged, inserted, self._staged - distinct, distinct - inserted)


class SQLiteLoader:
    """executemany into a temporary table inside the batch's one transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._staged = 0
        session.execute(text("CREATE TEMP TABLE IF NOT EXISTS stage_numbers (number TEXT NOT NULL)"))
        session.execute(text("DELETE FROM stage_numbers"))
        self._raw = session.connection().connection.driver_connection

    def stage(self, numbers: list[str]) -> None:
        if not numbers:
            return
        self._raw.executemany("INSERT INTO stage_numbers (number) VALUES (?)", ((n,) for n in numbers))
        self._staged += len(numbers)

    def finish(self, *, institution_id, quarter, batch_id, registered_at) -> LoadCounts:
        distinct = self._session.execute(text("SELECT count(DISTINCT number) FROM stage_numbers")).scalar_one()
        result = self._session.execute(
            text(
                "INSERT OR IGNORE INTO report_numbers (number, institution_id, quarter, batch_id, registered_at) "
                "SELECT DISTINCT number, :iid, :quarter, :batch, :at FROM stage_numbers"
            ),
            {"iid": institution_id, "quarter": quarter, "batch": batch_id, "at": _naive_utc(registered_at)},
        )
        inserted = result.rowcount
        self._session.execute(text("DELETE FROM stage_numbers"))
        return LoadCounts(self._staged, inserted, self._staged - distinct, distinct - inserted)


def make_loader(session: Session) -> NumberLoader:
    if session.get_bind().dialect.name == "postgresql":
        return PostgresLoader(session)
    return SQLiteLoader(session)


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

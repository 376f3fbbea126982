"""Verification: the verdict on a report number (docs/contract.md, "Verification").

The Bloom index answers "not registered" without SQL; the database confirms everything else in
one statement. The institution directory resolves the institution text and fills the verdict.
A verification is a :class:`Query` (:meth:`VerificationService.prepare`), a Bloom answer, and
the verdict (:meth:`VerificationService.answer`); :meth:`VerificationService.verify` does all
three, and the verify edge (portal/edge.py) asks for the Bloom answer itself, so that its rate-limit
count and the probe share one Redis exchange.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy import Engine

from registry.institutions.directory import InstitutionDirectory, InstitutionInfo
from registry.infra.forklocal import ForkLocal
from registry.numbers.normalize import normalize_number
from registry.numbers.quarters import Clock, iso_local, pending_window, SHANGHAI, system_clock


class BloomLookup(Protocol):
    def lookup(self, number: str) -> bool | None: ...


class Unavailable(RuntimeError):
    """A backend the answer needs is down."""


STATUSES = ("found", "withdrawn", "mismatch", "ambiguous", "not_found")

_BY_NUMBER = (
    "SELECT institution_id, quarter, registered_at, withdrawn_at, withdraw_reason "
    "FROM report_numbers WHERE number = {}"
)
_BY_NUMBERS = (
    "SELECT number, institution_id, quarter, registered_at, withdrawn_at, withdraw_reason "
    "FROM report_numbers WHERE number {}"
)


class _Reader:
    """A thread's read connection. It goes with its thread: a thread that ends (a dev server's
    request thread, a shrinking thread pool) closes it, in the process that opened it only."""

    __slots__ = ("conn", "driver", "cursor", "_pid")

    def __init__(self, conn, driver, cursor) -> None:
        self.conn = conn  # sqlalchemy Connection, autocommit
        self.driver = driver  # its driver (DBAPI) connection
        self.cursor = cursor  # a cursor of that, reused
        self._pid = os.getpid()

    def close(self, broken: bool = False) -> None:
        if self._pid != os.getpid():  # a forked child must not close its parent's connection
            return
        self._pid = None
        steps = (self.cursor.close, self.conn.invalidate, self.conn.close) if broken else (
            self.cursor.close, self.conn.close)
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone anyway
                pass

    def __del__(self) -> None:
        self.close()


class Query(NamedTuple):
    """A verification asked: the normalised number and the institution it names, if any."""

    number: str
    asked: InstitutionInfo | None
    resolved: bool | None  # None: no institution given


class Registration(NamedTuple):
    institution_id: int
    quarter: str
    registered_at: dt.datetime
    withdrawn_at: dt.datetime | None
    withdraw_reason: str | None


def _utc(value) -> dt.datetime | None:
    """Driver values as aware UTC: SQLite gives text, PostgreSQL naive timestamps."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc)


@dataclass
class Verdict:
    number: str
    status: str
    institution: InstitutionInfo | None
    institution_resolved: bool | None
    checked_at: dt.datetime
    quarter: str | None = None
    registered_at: dt.datetime | None = None
    withdrawn_at: dt.datetime | None = None
    withdraw_reason: str | None = None
    candidates: list[InstitutionInfo] = field(default_factory=list)
    pending_since: dt.date | None = None
    pending_until: dt.date | None = None
    source: str = "bloom"  # bloom | database: where a negative came from

    def to_json(self) -> dict:
        return {
            "number": self.number,
            "status": self.status,
            "institution": self.institution.to_json() if self.institution else None,
            "institution_resolved": self.institution_resolved,
            "quarter": self.quarter,
            "registered_at": iso_local(self.registered_at),
            "withdrawn_at": iso_local(self.withdrawn_at),
            "candidates": [{"name": c.name, "uscc": c.uscc} for c in self.candidates],
            "pending_since": self.pending_since.isoformat() if self.pending_since else None,
            "pending_until": self.pending_until.isoformat() if self.pending_until else None,
            "checked_at": iso_local(self.checked_at),
        }


def to_json_many(verdicts: list[Verdict]) -> list[dict]:
    """``[v.to_json() for v in verdicts]``, the same JSON, with each institution's JSON and each
    moment's text made once for the whole list (a bulk answer repeats them item after item)."""
    institutions: dict[int, dict] = {}
    texts: dict = {}

    def institution(info):
        if info is None:
            return None
        made = institutions.get(info.id)
        if made is None:
            made = institutions[info.id] = info.to_json()
        return made

    def moment(value):
        if value is None:
            return None
        made = texts.get(value)
        if made is None:
            made = texts[value] = iso_local(value) if isinstance(value, dt.datetime) else value.isoformat()
        return made

    return [{
        "number": v.number,
        "status": v.status,
        "institution": institution(v.institution),
        "institution_resolved": v.institution_resolved,
        "quarter": v.quarter,
        "registered_at": moment(v.registered_at),
        "withdrawn_at": moment(v.withdrawn_at),
        "candidates": [{"name": c.name, "uscc": c.uscc} for c in v.candidates],
        "pending_since": moment(v.pending_since),
        "pending_until": moment(v.pending_until),
        "checked_at": moment(v.checked_at),
    } for v in verdicts]


class VerificationService:
    def __init__(
        self,
        *,
        engine: Engine,
        bloom: BloomLookup,
        directory: InstitutionDirectory,
        clock: Clock = system_clock,
    ) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._by_number = _BY_NUMBER.format("%s" if self._postgres else "?")
        # PostgreSQL: ``= ANY(array)`` over the partitions' primary-key indexes (the reader's
        # connection never scans report_numbers sequentially: see _reader)
        self._by_numbers = _BY_NUMBERS.format("= ANY(%s)") if self._postgres else None
        self._local = ForkLocal()  # the per-thread read connection; a forked child makes its own
        self._bloom = bloom
        self._directory = directory
        self._clock = clock
        self.lookups = 0  # statements the read path ran (the statement-counting tests read it too)

    def now(self) -> dt.datetime:
        """The verifier's clock (the ``checked_at`` of an answer without verdicts)."""
        return self._clock()

    def verify(self, raw_number: str, institution_text: str | None = None) -> Verdict:
        """Raises :class:`InvalidValue` for a malformed number, :class:`Unavailable` when the
        database is needed and down."""
        query = self.prepare(raw_number, institution_text)
        return self.answer(query, self._bloom.lookup(query.number))

    def prepare(self, raw_number: str, institution_text: str | None = None) -> Query:
        """Normalise the number and resolve the institution text (no I/O); raises :class:`InvalidValue`."""
        number = normalize_number(raw_number)
        if institution_text and institution_text.strip():
            asked = self._directory.resolve(institution_text)
            return Query(number, asked, asked is not None)
        return Query(number, None, None)

    def answer(self, query: Query, maybe: bool | None) -> Verdict:
        """The verdict, given the Bloom index's answer for the number: False is final (no SQL);
        True and None (the index cannot say now) are settled by the database.

        Until the institution directory has loaded (a worker started while the database was
        down), a verdict that needs it — an institution given, or a registration to describe —
        is :class:`Unavailable`; a number the index rules out, asked without an institution,
        still answers ``not_found``."""
        now = self._clock()
        directory = self._directory.loaded
        if query.resolved is not None and not directory:
            raise Unavailable("the institution directory is not loaded yet")
        if maybe is False:
            return self._negative(query.number, "not_found", query.asked, query.resolved, now)
        rows = self._rows(query.number)
        if rows and not directory:
            raise Unavailable("the institution directory is not loaded yet")
        verdict = self._decide(query.number, rows, query.asked, query.resolved, now)
        if maybe is None:
            verdict.source = "database"
        return verdict

    def answer_many(self, queries: list[Query], maybes: list[bool | None]) -> list[Verdict]:
        """The verdicts of several queries (a bulk request), each exactly as :meth:`answer` gives
        it, with one statement for all the numbers the Bloom index did not rule out (none when it
        ruled out all of them)."""
        now = self._clock()
        directory = self._directory.loaded
        if not directory and any(q.resolved is not None for q in queries):
            raise Unavailable("the institution directory is not loaded yet")
        rows = self._rows_of({q.number for q, maybe in zip(queries, maybes) if maybe is not False})
        if rows and not directory:
            raise Unavailable("the institution directory is not loaded yet")
        verdicts = []
        since, until = pending_window(now.astimezone(SHANGHAI).date())
        for query, maybe in zip(queries, maybes):
            if maybe is False:
                verdicts.append(Verdict(number=query.number, status="not_found", institution=query.asked,
                                        institution_resolved=query.resolved, checked_at=now,
                                        pending_since=since, pending_until=until))
                continue
            verdict = self._decide(query.number, rows.get(query.number, []), query.asked, query.resolved, now)
            if maybe is None:
                verdict.source = "database"
            verdicts.append(verdict)
        return verdicts

    def _rows_of(self, numbers: set[str]) -> dict[str, list[Registration]]:
        """The registrations of several numbers: one statement (``= ANY(array)`` on PostgreSQL,
        ``IN (…)`` on SQLite), counted once in ``lookups``; none for no numbers."""
        if not numbers:
            return {}
        numbers = sorted(numbers)
        if self._postgres:
            statement, params = self._by_numbers, (numbers,)
        else:
            statement, params = _BY_NUMBERS.format(f"IN ({', '.join('?' * len(numbers))})"), tuple(numbers)
        out: dict[str, list[Registration]] = {}
        for r in self._fetch(statement, params):
            out.setdefault(r[0], []).append(Registration(r[1], r[2], _utc(r[3]), _utc(r[4]), r[5]))
        return out

    def _rows(self, number: str) -> list[Registration]:
        """The registrations of ``number``: one indexed statement on this thread's own autocommit
        connection (no pool checkout, no liveness ping, no open transaction), prepared by the
        driver. It runs for every possible hit, so it goes straight to the driver's cursor (one
        code path, in tests as in production): SQLAlchemy's execution and result machinery cost
        14 µs a lookup, four times the lookup itself. Each statement is counted in ``lookups``.
        A connection that broke since its last use is replaced once before giving up."""
        return [Registration(r[0], r[1], _utc(r[2]), _utc(r[3]), r[4]) for r in self._fetch(self._by_number, (number,))]

    def _fetch(self, statement: str, params: tuple) -> list[tuple]:
        """Run one read statement on this thread's reader (counted in ``lookups``); its rows."""
        dialect = self._engine.dialect
        for attempt in (1, 2):
            reader = self._reader()
            try:
                self.lookups += 1
                reader.cursor.execute(statement, params)
                return reader.cursor.fetchall()
            except dialect.loaded_dbapi.Error as exc:
                dropped = dialect.is_disconnect(exc, reader.driver, reader.cursor)
                self.close_reader(broken=True)
                if attempt == 1 and dropped:
                    continue
                raise Unavailable("the registry database is unreachable") from exc
        raise AssertionError("unreachable")

    def _reader(self) -> _Reader:
        slots = self._local.slots
        reader = getattr(slots, "reader", None)
        if reader is None:
            try:
                conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                driver = conn.connection.driver_connection
                if self._engine.dialect.name == "postgresql":
                    conn.detach()  # its session setting below must not go back into the pool
                    # The lookup runs as a prepared statement over a hash-partitioned table.
                    # PostgreSQL judges a custom plan (pruned while planning) cheaper than the
                    # generic one (pruned at execution) every time, and so plans each lookup
                    # anew: half of its CPU per lookup (≈ 85 → 50 µs). The generic plan prunes
                    # to the same one partition. (Set on the driver's connection: it is setup, not
                    # a statement of any verification.)
                    driver.execute("SET plan_cache_mode = force_generic_plan")
                    # A bulk lookup (``number = ANY(array)``) on a table the planner has no
                    # statistics for yet (just loaded) was planned as sequential scans of every
                    # partition (0.7 s for 500 numbers); both read statements are primary-key
                    # lookups, so this connection never scans sequentially.
                    driver.execute("SET enable_seqscan = off")
                reader = slots.reader = _Reader(conn, driver, driver.cursor())
            except (OperationalError, DBAPIError) as exc:
                raise Unavailable("the registry database is unreachable") from exc
        return reader

    def close_reader(self, broken: bool = False) -> None:
        """Give back this thread's read connection (at shutdown), or discard it (after an error)."""
        slots = self._local.slots
        reader, slots.reader = getattr(slots, "reader", None), None
        if reader is not None:
            reader.close(broken)

    def _negative(self, number, status, asked, resolved, now) -> Verdict:
        since, until = pending_window(now.astimezone(SHANGHAI).date())
        return Verdict(
            number=number,
            status=status,
            institution=asked,
            institution_resolved=resolved,
            checked_at=now,
            pending_since=since,
            pending_until=until,
        )

    def _decide(self, number, rows, asked, resolved, now) -> Verdict:
        if asked is not None:
            own = next((r for r in rows if r.institution_id == asked.id), None)
            if own is not None:
                return self._registered(number, own, asked, resolved, now)
            return self._negative(number, "mismatch" if rows else "not_found", asked, resolved, now)
        if not rows:
            return self._negative(number, "not_found", None, resolved, now)
        if len(rows) == 1:
            registrant = self._directory.get(rows[0].institution_id)
            return self._registered(number, rows[0], registrant, resolved, now)
        candidates = [c for c in (self._directory.get(r.institution_id) for r in rows) if c is not None]
        candidates.sort(key=lambda c: c.name)
        return Verdict(
            number=number,
            status="ambiguous",
            institution=None,
            institution_resolved=resolved,
            checked_at=now,
            candidates=candidates,
        )

    @staticmethod
    def _registered(number, row, registrant, resolved, now) -> Verdict:
        return Verdict(
            number=number,
            status="withdrawn" if row.withdrawn_at else "found",
            institution=registrant,
            institution_resolved=resolved,
            checked_at=now,
            quarter=row.quarter,
            registered_at=row.registered_at,
            withdrawn_at=row.withdrawn_at,
            withdraw_reason=row.withdraw_reason,
        )

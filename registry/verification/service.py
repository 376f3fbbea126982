"""Verification: the verdict on a report number (docs/contract.md, "Verification").

The Bloom index answers "not registered" without SQL; the database confirms everything else in
one statement (with read replicas, a replica's miss is asked again of the primary:
registry/verification/replicas.py). The institution directory resolves the institution text and fills the verdict.
A verification is a :class:`Query` (:meth:`VerificationService.prepare`), a Bloom answer, and
the verdict (:meth:`VerificationService.answer`); :meth:`VerificationService.verify` does all
three, and the verify edge (portal/edge.py) asks for the Bloom answer itself, so that its rate-limit
count and the probe share one Redis exchange.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from sqlalchemy import Engine

from registry.institutions.directory import InstitutionDirectory, InstitutionInfo
from registry.numbers.normalize import normalize_number
from registry.numbers.quarters import Clock, iso_local, local_date, pending_window, system_clock
from registry.verification.readers import ReadConnections, Unavailable, _Reader, utc
from registry.verification.replicas import Replicas


class BloomLookup(Protocol):
    def lookup(self, number: str) -> bool | None: ...


STATUSES = ("found", "withdrawn", "mismatch", "ambiguous", "not_found")

_BY_NUMBER = (
    "SELECT institution_id, quarter, registered_at, withdrawn_at, withdraw_reason{} "
    "FROM report_numbers WHERE number = {}"
)
_BY_NUMBERS = (
    "SELECT number, institution_id, quarter, registered_at, withdrawn_at, withdraw_reason{} "
    "FROM report_numbers WHERE number {}"
)
# PostgreSQL: the asked numbers joined to report_numbers, a nested loop whose inner side is pruned
# at run time to the one hash partition of each number. ``number = ANY(array)`` looked for every
# number in each of the 16 partitions' indexes: 23 ms of the server's CPU for 505 numbers, 4.7 ms
# so (the read connection never scans sequentially, so the join is never a hash join over the table)
_BY_NUMBERS_JOINED = (
    "SELECT r.number, institution_id, quarter, registered_at, withdrawn_at, withdraw_reason{} "
    "FROM unnest(%s::text[]) AS asked(number) JOIN report_numbers r ON r.number = asked.number"
)
# with a document fingerprint to compare, the same statements read the registered one too
_DOCUMENT = ", sha256"
DOCUMENT_ANSWERS = ("match", "mismatch", "none_registered")


class Query(NamedTuple):
    """A verification asked: the normalised number and the institution it names, if any."""

    number: str
    asked: InstitutionInfo | None
    resolved: bool | None  # None: no institution given
    document: str | None = None  # a document fingerprint to compare (64 lowercase hex)


class Registration(NamedTuple):
    institution_id: int
    quarter: str
    registered_at: dt.datetime
    withdrawn_at: dt.datetime | None
    withdraw_reason: str | None
    sha256: str | None = None  # read only when a document is compared


def _registration(r) -> Registration:
    return Registration(r[0], r[1], utc(r[2]), utc(r[3]), r[4], *r[5:])


def document_answer(verdict: "Verdict", rows: list[Registration], document: str) -> str:
    """``match``, ``mismatch`` or ``none_registered``: the document against the fingerprint of
    the registration the answer names (the registrant of a found or withdrawn number; any of an
    ambiguous number's candidates). An answer that names no registration — ``not_found``, or a
    ``mismatch`` naming an institution that never registered the number — has none registered:
    another institution's fingerprint is never compared (nor revealed)."""
    if verdict.status in ("found", "withdrawn") and verdict.institution is not None:
        named = [r for r in rows if r.institution_id == verdict.institution.id]
    elif verdict.status == "ambiguous":
        named = rows
    else:
        named = []
    registered = {r.sha256 for r in named if r.sha256 is not None}
    if not registered:
        return "none_registered"
    return "match" if document in registered else "mismatch"


def _settles(rows: list[Registration], query: Query) -> bool:
    """Do a replica's rows answer ``query`` for good? Only a registration of what was asked
    (any, or the named institution's) does; a replica that has not replayed the newest commits
    cannot tell "no row" from "not yet", so anything else is asked of the primary."""
    if query.asked is not None:
        return any(r.institution_id == query.asked.id for r in rows)
    return bool(rows)


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
    replica: bool = False  # a read replica gave the rows (never for a negative)
    document: str | None = None  # match | mismatch | none_registered, when a document was compared

    def to_json(self) -> dict:
        answer = {
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
        if self.document is not None:  # only when the question gave a document fingerprint
            answer["document"] = self.document
        return answer


class _Texts(dict):
    """Each moment's text, made on its first use (``None`` stays ``None``): a dict lookup, not a
    call, for every moment of every item of a bulk answer."""

    def __missing__(self, value):
        made = self[value] = iso_local(value) if isinstance(value, dt.datetime) else value.isoformat()
        return made


def to_json_many(verdicts: list[Verdict]) -> list[dict]:
    """``[v.to_json() for v in verdicts]``, the same JSON, with each institution's JSON and each
    moment's text made once for the whole list (a bulk answer repeats them item after item)."""
    institutions: dict[int, dict] = {}
    texts = _Texts({None: None})

    def institution(info):
        made = institutions.get(info.id)
        if made is None:
            made = institutions[info.id] = info.to_json()
        return made

    answers = [{
        "number": v.number,
        "status": v.status,
        "institution": None if v.institution is None else institution(v.institution),
        "institution_resolved": v.institution_resolved,
        "quarter": v.quarter,
        "registered_at": texts[v.registered_at],
        "withdrawn_at": texts[v.withdrawn_at],
        "candidates": [{"name": c.name, "uscc": c.uscc} for c in v.candidates] if v.candidates else [],
        "pending_since": texts[v.pending_since],
        "pending_until": texts[v.pending_until],
        "checked_at": texts[v.checked_at],
    } for v in verdicts]
    for answer, verdict in zip(answers, verdicts):
        if verdict.document is not None:
            answer["document"] = verdict.document
    return answers


class VerificationService:
    def __init__(
        self,
        *,
        engine: Engine,
        bloom: BloomLookup,
        directory: InstitutionDirectory,
        clock: Clock = system_clock,
        replicas: list[tuple[str, Engine]] = (),
        replica_max_lag: float = 2.0,
    ) -> None:
        """``replicas``: (name for the logs, engine) of each read replica of a PostgreSQL
        ``engine``; possible hits are looked up there while it is fresh (registry/verification/replicas.py)."""
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        mark = "%s" if self._postgres else "?"
        self._by_number = _BY_NUMBER.format("", mark)
        self._by_number_document = _BY_NUMBER.format(_DOCUMENT, mark)
        # PostgreSQL: the numbers joined to the table, each looked up in its own partition
        self._by_numbers = {document: _BY_NUMBERS_JOINED.format(_DOCUMENT if document else "")
                            for document in (False, True)} if self._postgres else None
        self._primary = ReadConnections(engine)  # the per-thread read connection; a forked child makes its own
        self._replicas = Replicas(list(replicas), primary=self._primary, max_lag=replica_max_lag,
                                  count=self._count) if replicas else None
        self._bloom = bloom
        self._directory = directory
        self._clock = clock
        self.lookups = 0  # statements the read path ran (the statement-counting tests read it too)
        self.false_positives = 0  # the Bloom index said "maybe" and the database had no row (/metrics)

    def _count(self, statements: int) -> None:
        self.lookups += statements

    def replica_status(self) -> list[dict]:
        """Each read replica's state (none configured: an empty list)."""
        return self._replicas.status() if self._replicas is not None else []

    def now(self) -> dt.datetime:
        """The verifier's clock (the ``checked_at`` of an answer without verdicts)."""
        return self._clock()

    def verify(self, raw_number: str, institution_text: str | None = None, document: str | None = None) -> Verdict:
        """Raises :class:`InvalidValue` for a malformed number, :class:`Unavailable` when the
        database is needed and down. ``document``: a fingerprint to compare (as :meth:`prepare`)."""
        query = self.prepare(raw_number, institution_text, document)
        return self.answer(query, self._bloom.lookup(query.number))

    def prepare(self, raw_number: str, institution_text: str | None = None, document: str | None = None) -> Query:
        """Normalise the number and resolve the institution text (no I/O); raises :class:`InvalidValue`.
        ``document``: a document fingerprint (64 lowercase hex, validated by the caller) to
        compare with the registered one."""
        number = normalize_number(raw_number)
        if institution_text and institution_text.strip():
            asked = self._directory.resolve(institution_text)
            return Query(number, asked, asked is not None, document)
        return Query(number, None, None, document)

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
            verdict = self._negative(query.number, "not_found", query.asked, query.resolved, now)
            if query.document is not None:
                verdict.document = "none_registered"
            return verdict
        rows, replica = self._rows(query, maybe)
        if rows and not directory:
            raise Unavailable("the institution directory is not loaded yet")
        if maybe and not rows:
            self.false_positives += 1
        verdict = self._decide(query.number, rows, query.asked, query.resolved, now)
        verdict.replica = replica
        if maybe is None:
            verdict.source = "database"
        if query.document is not None:
            verdict.document = document_answer(verdict, rows, query.document)
        return verdict

    def answer_many(self, queries: list[Query], maybes: list[bool | None]) -> list[Verdict]:
        """The verdicts of several queries (a bulk request), each exactly as :meth:`answer` gives
        it, with one statement for all the numbers the Bloom index did not rule out (none when it
        ruled out all of them)."""
        now = self._clock()
        directory = self._directory.loaded
        if not directory and any(q.resolved is not None for q in queries):
            raise Unavailable("the institution directory is not loaded yet")
        rows, on_replica = self._rows_many(queries, maybes)
        if rows and not directory:
            raise Unavailable("the institution directory is not loaded yet")
        self.false_positives += len({q.number for q, maybe in zip(queries, maybes) if maybe and q.number not in rows})
        verdicts = []
        since, until = pending_window(local_date(now))
        for query, maybe in zip(queries, maybes):
            if maybe is False:
                verdicts.append(Verdict(number=query.number, status="not_found", institution=query.asked,
                                        institution_resolved=query.resolved, checked_at=now,
                                        pending_since=since, pending_until=until,
                                        document=None if query.document is None else "none_registered"))
                continue
            registrations = rows.get(query.number, [])
            verdict = self._decide(query.number, registrations, query.asked, query.resolved, now)
            verdict.replica = query.number in on_replica
            if maybe is None:
                verdict.source = "database"
            if query.document is not None:
                verdict.document = document_answer(verdict, registrations, query.document)
            verdicts.append(verdict)
        return verdicts

    def _rows_many(self, queries: list[Query], maybes: list[bool | None]) -> tuple[dict, set[str]]:
        """The registrations of every number the Bloom index did not rule out, and the numbers a
        replica answered: the possible hits on a fresh replica (one statement), then whatever it
        did not settle and the numbers the index could not judge on the primary (one statement)."""
        wanted = {q.number for q, maybe in zip(queries, maybes) if maybe is not False}
        hits = {q.number for q, maybe in zip(queries, maybes) if maybe is True}
        document = any(q.document is not None for q in queries)
        replica = self._replicas.pick() if hits and self._replicas is not None else None
        settled: dict[str, list[Registration]] = {}
        if replica is not None:
            try:
                found = self._rows_of(hits, replica.reads, document)
            except Unavailable as exc:
                self._replicas.failed(replica, exc)
            else:
                unsettled = {q.number for q, maybe in zip(queries, maybes)
                             if maybe is True and not _settles(found.get(q.number, []), q)}
                settled = {n: found[n] for n in hits - unsettled}
        rows = self._rows_of(wanted - settled.keys(), self._primary, document)
        rows.update(settled)
        return rows, set(settled)

    def _rows_of(self, numbers: set[str], reads: ReadConnections, document: bool = False) -> dict[str, list[Registration]]:
        """The registrations of several numbers (with their document fingerprints when
        ``document``): one statement (the array joined to the table on PostgreSQL, ``IN (…)`` on
        SQLite), counted once in ``lookups``; none for no numbers."""
        if not numbers:
            return {}
        numbers = sorted(numbers)
        if self._postgres:
            statement, params = self._by_numbers[document], (numbers,)
        else:
            statement = _BY_NUMBERS.format(_DOCUMENT if document else "", f"IN ({', '.join('?' * len(numbers))})")
            params = tuple(numbers)
        out: dict[str, list[Registration]] = {}
        self.lookups += 1
        for r in reads.fetch(statement, params):
            out.setdefault(r[0], []).append(_registration(r[1:]))
        return out

    def _rows(self, query: Query, maybe: bool | None) -> tuple[list[Registration], bool]:
        """The registrations of the query's number, and whether a replica gave them: one indexed
        statement on this thread's own autocommit connection (no pool checkout, no liveness ping,
        no open transaction), prepared by the driver. It runs for every possible hit, so it goes
        straight to the driver's cursor (one code path, in tests as in production): SQLAlchemy's
        execution and result machinery cost 14 µs a lookup, four times the lookup itself. Each
        statement is counted in ``lookups``. A connection that broke since its last use is
        replaced once before giving up.

        A possible hit goes to a fresh replica first; its rows stand when they answer the query
        (:func:`_settles`), else the primary is asked too (registry/verification/replicas.py)."""
        statement = self._by_number if query.document is None else self._by_number_document
        replica = self._replicas.pick() if maybe is True and self._replicas is not None else None
        if replica is not None:
            try:
                self.lookups += 1
                rows = [_registration(r) for r in replica.reads.fetch(statement, (query.number,))]
            except Unavailable as exc:
                self._replicas.failed(replica, exc)
            else:
                if _settles(rows, query):
                    return rows, True
        return [_registration(r) for r in self._fetch(statement, (query.number,))], False

    def _fetch(self, statement: str, params: tuple) -> list[tuple]:
        """Run one read statement on this thread's primary reader (counted in ``lookups``); its rows."""
        self.lookups += 1
        return self._primary.fetch(statement, params)

    def _reader(self) -> _Reader:
        return self._primary.reader()

    def close_reader(self, broken: bool = False) -> None:
        """Give back this thread's read connections (at shutdown), or discard them (after an error)."""
        self._primary.close(broken)
        if self._replicas is not None:
            self._replicas.close()

    def _negative(self, number, status, asked, resolved, now) -> Verdict:
        since, until = pending_window(local_date(now))
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

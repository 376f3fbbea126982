"""The transparency log service: integrating pending entries (the key holder only), and serving
checkpoints, proofs and entries from what is stored (every host).

Entries are written to ``tlog_pending`` in the transaction of the change they record (registry/registration:
the loaders, a span of up to 10,000 register entries a row, registry/tlog/spans.py; withdraw and
restore, a row each); :meth:`TransparencyLog.integrate` takes them in commit order, expands the
spans, gives each entry the next leaf index, stores its hashes in tiles and signs a new
checkpoint, all in one transaction per chunk. Integrating refuses to sign a tree whose stored
hashes no longer reproduce the previous checkpoint's root: the log only ever grows.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from registry.institutions.models import Institution

from .entries import commitment, entry_text, fast_entry_text
from .merkle import Tree, leaf_hash
from .models import LogEntry, PendingEntry, StoredCheckpoint, VerifierKey
from .note import Checkpoint, Signer, sign_checkpoint
from .spans import unpack
from .tiles import TileReader, append_hashes

log = logging.getLogger(__name__)

INTEGRATE_CHUNK = 200_000  # entries per transaction (and checkpoint) when catching up
MAX_ENTRIES = 1000
ADVISORY_KEY = 0x726E72746C6F6700  # "rnrtlog\0": one integrator at a time on PostgreSQL


class LogRangeError(ValueError):
    """A malformed range (400)."""


class BeyondTree(LookupError):
    """An index or size beyond the newest checkpoint (404)."""


class LogBroken(RuntimeError):
    """The stored tree no longer reproduces the previous checkpoint: integration refused."""


@dataclass
class Integration:
    added: int = 0
    size: int = 0
    signed: list[int] = field(default_factory=list)  # sizes of the checkpoints signed


@dataclass(frozen=True)
class OwnEntry:
    leaf_index: int
    entry: str
    action: str
    number: str
    salt: str
    at: dt.datetime
    by: str | None  # the account or token that made the change, as recorded
    source: str | None
    sha256: str | None = None  # the registration's document fingerprint, part of the commitment

    def to_json(self) -> dict:
        return {"leaf_index": self.leaf_index, "entry": self.entry, "action": self.action, "number": self.number,
                "salt": self.salt, "sha256": self.sha256, "by": self.by, "source": self.source}


@dataclass(frozen=True)
class ChainStatus:
    size: int
    note: str | None
    signed_at: dt.datetime | None
    checked: int
    holds: bool
    broken_at: int | None
    pending: int


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class TransparencyLog:
    def __init__(self, *, sessions: sessionmaker[Session], origin: str, signer: Signer | None,
                 clock: Callable[[], dt.datetime]) -> None:
        self._sessions = sessions
        self.origin = origin
        self.signer = signer  # only the integrator holds it
        self._clock = clock

    # --- integration (the key holder) ------------------------------------------------------
    @property
    def integrates(self) -> bool:
        return self.signer is not None

    def integrate(self, *, chunk: int = INTEGRATE_CHUNK) -> Integration:
        """Append every pending entry, a chunk per transaction, each chunk ending with a signed
        checkpoint. A first call on an empty log signs the empty tree."""
        if self.signer is None:
            raise RuntimeError("this process holds no log signing key (TLOG_SIGNING_KEY)")
        result = Integration()
        while True:
            with self._sessions() as session:
                if session.get_bind().dialect.name == "postgresql":
                    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_KEY})
                added, size, signed = self._integrate_chunk(session, chunk)
                session.commit()
            result.added += added
            result.size = size
            if signed:
                result.signed.append(size)
            if added < chunk:
                return result

    def _integrate_chunk(self, session: Session, chunk: int) -> tuple[int, int, bool]:
        newest = self._newest(session)
        size = session.scalar(select(func.coalesce(func.max(LogEntry.leaf_index) + 1, 0)))
        reader = TileReader(session)
        tree = Tree(reader)
        if newest is not None and (size < newest.size or tree.root(newest.size) != newest.root):
            raise LogBroken(f"the stored tree does not reproduce checkpoint {newest.size}: refusing to extend it")
        taken = _take_pending(session, chunk)
        if taken:
            usccs = self._usccs(session, {row[3] for row in taken})
            rows, leaves = [], []
            for offset, (_id, action, number, institution_id, batch_id, quarter, at, salt, sha256) in enumerate(taken):
                digest = commitment(usccs[institution_id], number, salt, sha256)
                entry = fast_entry_text(action=action, at=at, batch=batch_id, commitment=digest, quarter=quarter)
                leaves.append(leaf_hash(entry.encode()))
                rows.append((size + offset, action, number, institution_id, batch_id, quarter, at, salt, digest))
            _store_entries(session, rows)
            append_hashes(session, reader, 0, size, leaves)
            size += len(taken)
        if newest is not None and newest.size == size:
            return len(taken), size, False
        note = sign_checkpoint(Checkpoint(self.origin, size, tree.root(size)), self.signer)
        session.add(StoredCheckpoint(size=size, root=tree.root(size), note=note, created_at=self._clock()))
        key = self.signer.verifier.text()
        if session.scalar(select(VerifierKey.id).where(VerifierKey.text == key)) is None:
            session.add(VerifierKey(text=key, created_at=self._clock()))
        return len(taken), size, True

    @staticmethod
    def _usccs(session: Session, ids: set[int]) -> dict[int, str]:
        return dict(session.execute(select(Institution.id, Institution.uscc).where(Institution.id.in_(ids))).all())

    @staticmethod
    def _newest(session: Session) -> StoredCheckpoint | None:
        return session.scalar(select(StoredCheckpoint).order_by(StoredCheckpoint.size.desc()).limit(1))

    def verify(self, verifiers: Sequence) -> LogCheck:
        """The whole log checked (``tlog verify``): see :func:`check_log`."""
        with self._sessions() as session:
            return check_log(session, verifiers)

    # --- monitoring (an institution follows its own entries; the regulator the chain) ---------
    def mine(self, institution_id: int, *, since: int = 0, limit: int = MAX_ENTRIES,
             newest_first: bool = False) -> tuple[list["OwnEntry"], int | None, int]:
        """The institution's integrated entries from leaf ``since`` on (or its newest first),
        each with its number, salt and who made the change; the next ``since`` to ask for (None
        when there is no more), and the newest checkpoint's size."""
        from registry.registration.models import Batch, NumberEvent, ReportNumber

        with self._sessions() as session:
            size = self._size(session)
            query = select(LogEntry).where(LogEntry.institution_id == institution_id, LogEntry.leaf_index >= since,
                                           LogEntry.leaf_index < size)
            query = query.order_by(LogEntry.leaf_index.desc() if newest_first else LogEntry.leaf_index)
            rows = session.scalars(query.limit(limit + 1)).all()
            more = len(rows) > limit
            rows = rows[:limit]
            batches = {b.id: b for b in session.scalars(select(Batch).where(
                Batch.id.in_({r.batch_id for r in rows if r.action == "register"})))}
            changes = [r for r in rows if r.action != "register"]
            events = {}
            if changes:
                for event in session.scalars(select(NumberEvent).where(
                        NumberEvent.institution_id == institution_id,
                        NumberEvent.number.in_({r.number for r in changes}))):
                    events[(event.number, event.kind, event.at)] = event
            fingerprints = dict(session.execute(select(ReportNumber.number, ReportNumber.sha256).where(
                ReportNumber.number.in_({r.number for r in rows}), ReportNumber.institution_id == institution_id,
                ReportNumber.sha256.is_not(None))).all()) if rows else {}
        out = []
        for row in rows:
            if row.action == "register":
                batch = batches.get(row.batch_id)
                by, source = (batch.created_by, batch.source) if batch else (None, None)
            else:
                event = events.get((row.number, "withdrawn" if row.action == "withdraw" else "restored", row.at))
                by, source = (event.actor, event.source) if event else (None, None)
            out.append(OwnEntry(leaf_index=row.leaf_index, entry=text_of(row), action=row.action, number=row.number,
                                salt=b64(row.salt), at=row.at, by=by, source=source,
                                sha256=fingerprints.get(row.number)))
        following = (rows[-1].leaf_index + 1 if not newest_first else None) if more else None
        return out, following, size

    def seen(self, institution_id: int) -> int:
        """The leaf index up to which the institution has reviewed its entries (its alerts start there)."""
        from registry.infra.base import RegistryState

        with self._sessions() as session:
            state = session.get(RegistryState, f"tlog_seen:{institution_id}")
            return state.value if state is not None else 0

    def mark_seen(self, institution_id: int, upto: int) -> None:
        from registry.infra.base import RegistryState

        with self._sessions() as session:
            state = session.get(RegistryState, f"tlog_seen:{institution_id}")
            if state is None:
                session.add(RegistryState(key=f"tlog_seen:{institution_id}", value=upto))
            else:
                state.value = max(state.value, upto)
            session.commit()

    def chain_status(self, verifier, *, recent: int = 50) -> "ChainStatus":
        """Do the newest ``recent`` checkpoints hold: each signed by ``verifier`` and reproduced
        by the one stored tree (so each extends the one before)? With the log's size and backlog."""
        from .note import NoteError, open_checkpoint

        with self._sessions() as session:
            checkpoints = session.scalars(select(StoredCheckpoint).order_by(StoredCheckpoint.size.desc())
                                          .limit(recent)).all()
            pending = _pending(session)
            tree = Tree(TileReader(session))
            broken = None
            for cp in reversed(checkpoints):
                try:
                    opened = open_checkpoint(cp.note, verifier) if verifier is not None else None
                    signed = verifier is None or (opened.size, opened.root) == (cp.size, cp.root)
                    holds = signed and tree.root(cp.size) == cp.root
                except (NoteError, LookupError):
                    holds = False
                if not holds:
                    broken = cp.size
                    break
        newest = checkpoints[0] if checkpoints else None
        return ChainStatus(size=newest.size if newest else 0, note=newest.note if newest else None,
                           signed_at=newest.created_at if newest else None, checked=len(checkpoints),
                           holds=broken is None, broken_at=broken, pending=pending)

    def pending_count(self) -> int:
        with self._sessions() as session:
            return _pending(session)

    # --- serving (every host) ------------------------------------------------------------------
    def checkpoint(self) -> StoredCheckpoint | None:
        with self._sessions() as session:
            return self._newest(session)

    def keys(self) -> list[str]:
        with self._sessions() as session:
            return list(session.scalars(select(VerifierKey.text).order_by(VerifierKey.id.desc())))

    def _size(self, session: Session) -> int:
        newest = self._newest(session)
        return newest.size if newest is not None else 0

    def inclusion(self, index: int, size: int) -> list[str]:
        if index < 0 or size <= index:
            raise LogRangeError("need 0 ≤ index < size")
        with self._sessions() as session:
            if size > self._size(session):
                raise BeyondTree("size is beyond the newest checkpoint")
            return [b64(h) for h in Tree(TileReader(session)).inclusion(index, size)]

    def consistency(self, old: int, new: int) -> list[str]:
        if old < 1 or new < old:
            raise LogRangeError("need 1 ≤ from ≤ to")
        with self._sessions() as session:
            if new > self._size(session):
                raise BeyondTree("'to' is beyond the newest checkpoint")
            return [b64(h) for h in Tree(TileReader(session)).consistency(old, new)]

    def entries(self, start: int, end: int) -> list[dict]:
        if start < 0 or end <= start or end - start > MAX_ENTRIES:
            raise LogRangeError(f"need 0 ≤ start < end ≤ start + {MAX_ENTRIES}")
        with self._sessions() as session:
            if end > self._size(session):
                raise BeyondTree("the range reaches beyond the newest checkpoint")
            rows = session.execute(select(LogEntry).where(LogEntry.leaf_index >= start, LogEntry.leaf_index < end)
                                   .order_by(LogEntry.leaf_index)).scalars()
            return [{"leaf_index": row.leaf_index, "entry": text_of(row)} for row in rows]

    def evidence(self, registrations: Sequence[tuple[str, int, str]]) -> dict:
        """The ``log`` of a verify answer with ``proof=1``: every entry of each (number,
        institution id, USCC) registration, with its inclusion proof in the newest checkpoint, or
        ``pending`` while it waits for the integrator."""
        from registry.registration.models import ReportNumber

        out: list[dict] = []
        with self._sessions() as session:
            newest = self._newest(session)
            size = newest.size if newest is not None else 0
            tree = Tree(TileReader(session))
            for number, institution_id, uscc in registrations:
                fingerprint = session.scalar(select(ReportNumber.sha256).where(
                    ReportNumber.number == number, ReportNumber.institution_id == institution_id))
                stored = session.scalars(select(LogEntry).where(
                    LogEntry.number == number, LogEntry.institution_id == institution_id)
                    .order_by(LogEntry.leaf_index)).all()
                for row in stored:
                    item = {"entry": text_of(row), "uscc": uscc, "number": number, "salt": b64(row.salt),
                            "sha256": fingerprint}
                    if row.leaf_index < size:
                        item.update(leaf_index=row.leaf_index,
                                    inclusion=[b64(h) for h in tree.inclusion(row.leaf_index, size)])
                    else:
                        item["pending"] = True
                    out.append(item)
                waiting = list(session.scalars(select(PendingEntry).where(
                    PendingEntry.number == number, PendingEntry.institution_id == institution_id)
                    .order_by(PendingEntry.id)))
                if not any(row.action == "register" for row in stored) and not any(
                        row.action == "register" for row in waiting):
                    # registered in a chunk whose span waits: its entry is the registration's row
                    registration = _waiting_in_span(session, number, institution_id)
                    if registration is not None:
                        digest = commitment(uscc, number, registration.salt, registration.sha256)
                        out.append({"entry": entry_text(action="register", at=registration.registered_at,
                                                        batch=registration.batch_id, commitment=digest,
                                                        quarter=registration.quarter),
                                    "pending": True, "uscc": uscc, "number": number,
                                    "salt": b64(registration.salt), "sha256": registration.sha256})
                for row in waiting:
                    digest = commitment(uscc, number, row.salt, row.sha256)
                    out.append({"entry": entry_text(action=row.action, at=row.at, batch=row.batch_id,
                                                    commitment=digest, quarter=row.quarter),
                                "pending": True, "uscc": uscc, "number": number, "salt": b64(row.salt),
                                "sha256": row.sha256})
        return {"checkpoint": newest.note if newest is not None else None, "entries": out}


_ENTRY_COLUMNS = "leaf_index, action, number, institution_id, batch_id, quarter, at, salt, commitment"
_PENDING_COLUMNS = "id, action, number, institution_id, batch_id, quarter, at, salt, sha256, count, numbers, salts, sha256s"


def _take_pending(session: Session, chunk: int) -> list[tuple]:
    """Delete the oldest committed pending rows, in commit (id) order, up to about ``chunk``
    entries — rows while the entries before them number fewer than ``chunk``, so at least one
    row, and at most one span's worth beyond — and return their entries in order, each span
    expanded in its packed order: (id, action, number, institution_id, batch_id, quarter, at,
    salt, sha256). One statement on the driver's connection (rows uncommitted elsewhere are
    neither seen nor lost); every row holds at least one entry, so the window looks at no more
    than ``chunk`` rows."""
    raw = session.connection().connection.driver_connection
    postgres = session.get_bind().dialect.name == "postgresql"
    mark = "%s" if postgres else "?"
    cur = raw.cursor()
    cur.execute(f"DELETE FROM tlog_pending WHERE id IN (SELECT id FROM "
                f"(SELECT id, sum(count) OVER (ORDER BY id) - count AS ahead FROM "
                f"(SELECT id, count FROM tlog_pending ORDER BY id LIMIT {mark}) head) taken WHERE ahead < {mark}) "
                f"RETURNING {_PENDING_COLUMNS}", (chunk, chunk))
    rows = cur.fetchall()
    cur.close()
    rows.sort(key=lambda row: row[0])
    out = []
    for id_, action, number, institution_id, batch_id, quarter, at, salt, sha256, count, numbers, salts, sha256s in rows:
        at = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at)  # SQLite keeps text
        at = at.replace(tzinfo=dt.timezone.utc)
        if numbers is None:
            out.append((id_, action, number, institution_id, batch_id, quarter, at, bytes(salt), sha256))
        else:
            out.extend([(id_, action, name, institution_id, batch_id, quarter, at, cut, digest)
                        for name, cut, digest in unpack(count, numbers, salts, sha256s)])
    return out


def _pending(session: Session) -> int:
    """Entries waiting for the integrator (a span counts its entries)."""
    return session.scalar(select(func.coalesce(func.sum(PendingEntry.count), 0)))


def _waiting_in_span(session: Session, number: str, institution_id: int):
    """The registration row of ``number`` when a pending span of its batch waits (its register
    entry is then in one of the batch's spans: the loaders write every new row of a chunk into
    the chunk's span, in the same transaction), else None."""
    from registry.registration.models import ReportNumber

    return session.execute(
        select(ReportNumber.batch_id, ReportNumber.quarter, ReportNumber.registered_at, ReportNumber.salt,
               ReportNumber.sha256)
        .where(ReportNumber.number == number, ReportNumber.institution_id == institution_id,
               select(PendingEntry.id).where(PendingEntry.batch_id == ReportNumber.batch_id,
                                             PendingEntry.institution_id == ReportNumber.institution_id,
                                             PendingEntry.numbers.is_not(None)).exists())).first()


def _store_entries(session: Session, rows: list[tuple]) -> None:
    """Insert integrated entries in bulk: COPY on PostgreSQL, executemany on SQLite (times as the
    UTCDateTime columns store them: naive UTC)."""
    raw = session.connection().connection.driver_connection
    naive = [(*row[:6], row[6].astimezone(dt.timezone.utc).replace(tzinfo=None), *row[7:]) for row in rows]
    if session.get_bind().dialect.name == "postgresql":
        with raw.cursor() as cur, cur.copy(f"COPY tlog_entries ({_ENTRY_COLUMNS}) FROM STDIN") as copy:
            for row in naive:
                copy.write_row(row)
        return
    cur = raw.cursor()
    cur.executemany(f"INSERT INTO tlog_entries ({_ENTRY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*row[:6], row[6].strftime("%Y-%m-%d %H:%M:%S.%f"), *row[7:]) for row in naive])
    cur.close()


def text_of(row: LogEntry) -> str:
    """The entry text of a stored entry (its commitment as stored)."""
    return fast_entry_text(action=row.action, at=row.at, batch=row.batch_id, commitment=row.commitment,
                           quarter=row.quarter)


# --- checking the whole log (``tlog verify``) ------------------------------------------------------
VERIFY_CHUNK = 10_000


@dataclass(order=True)
class Problem:
    index: int
    message: str = field(compare=False)


@dataclass
class LogCheck:
    entries: int = 0
    checkpoints: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return min(self.problems) if self.problems else None


def check_log(session: Session, verifiers: Sequence, *, chunk: int = VERIFY_CHUNK) -> LogCheck:
    """Every stored entry against its registration, the stored tree and the signed checkpoints;
    every registration against the log. Streams the entries in leaf order in constant memory
    (beyond the registrations withdrawn or restored)."""
    from registry.registration.models import ReportNumber

    from .merkle import CompactRange
    from .note import NoteError, open_checkpoint

    check = LogCheck()
    checkpoints = session.scalars(select(StoredCheckpoint).order_by(StoredCheckpoint.size)).all()
    check.checkpoints = len(checkpoints)
    newest = checkpoints[-1].size if checkpoints else 0
    for cp in checkpoints:
        opened = None
        for verifier in verifiers:
            try:
                opened = open_checkpoint(cp.note, verifier)
                break
            except NoteError:
                continue
        if opened is None or opened.size != cp.size or opened.root != cp.root:
            check.problems.append(Problem(min(cp.size, newest), f"checkpoint {cp.size} is not signed by a trusted key "
                                          "or does not say what is stored beside it"))
    roots = {cp.size: cp.root for cp in checkpoints}
    usccs = dict(session.execute(select(Institution.id, Institution.uscc)).all())
    reader = TileReader(session)
    edge = CompactRange()
    if 0 in roots and roots[0] != edge.root():
        check.problems.append(Problem(0, "checkpoint 0 is not the empty tree"))
    last_change: dict[tuple[str, int], tuple[str, dt.datetime, int]] = {}
    withdrawn_rows: dict[tuple[str, int], int] = {}  # registration withdrawn in the table → its register entry
    bad_leaves: list[int] = []
    expected = 0
    while True:
        rows = session.execute(select(LogEntry).where(LogEntry.leaf_index >= expected)
                               .order_by(LogEntry.leaf_index).limit(chunk)).scalars().all()
        if not rows:
            break
        numbers = {row.number for row in rows}
        registered = {(r.number, r.institution_id): r for r in session.execute(
            select(ReportNumber.number, ReportNumber.institution_id, ReportNumber.batch_id, ReportNumber.quarter,
                   ReportNumber.registered_at, ReportNumber.withdrawn_at, ReportNumber.salt, ReportNumber.sha256)
            .where(ReportNumber.number.in_(numbers)))}
        for row in rows:
            i = row.leaf_index
            if i != expected:
                check.problems.append(Problem(expected, f"entries {expected}…{i - 1} are missing from the log's storage"))
                return check  # the tree cannot be followed past a gap
            expected += 1
            key = (row.number, row.institution_id)
            uscc = usccs.get(row.institution_id)
            reg = registered.get(key)
            fingerprint = reg.sha256 if reg is not None else None
            if uscc is None or commitment(uscc, row.number, row.salt, fingerprint) != row.commitment:
                check.problems.append(Problem(i, f"entry {i}'s commitment does not match its registration data "
                                                 "(institution, number, document fingerprint, salt)"))
            leaf = leaf_hash(text_of(row).encode())
            try:
                stored_leaf = reader.hashes(0, i, 1)[0]
            except LookupError:
                stored_leaf = None
            if stored_leaf != leaf:
                check.problems.append(Problem(i, f"entry {i} does not hash to the leaf stored in the tree"))
                bad_leaves.append(i)
            # the stored tree is checked as stored: its upper hashes and checkpoints against its leaves
            for start, size, node in edge.append(stored_leaf or leaf):
                if size >= 256 and size & 0xFF == 0 and (size.bit_length() - 1) % 8 == 0:
                    level = (size.bit_length() - 1) // 8
                    try:
                        stored = reader.hashes(level, start // size, 1)[0]
                    except LookupError:
                        stored = None
                    if stored != node and not any(start <= b < start + size for b in bad_leaves):
                        check.problems.append(Problem(start, f"the stored tree's hash of entries {start}…"
                                                             f"{start + size - 1} does not match the entries"))
            if edge.size in roots and roots[edge.size] != edge.root():
                check.problems.append(Problem(i, f"checkpoint {edge.size} does not match the entries before it"))
            if i >= newest:
                check.problems.append(Problem(i, f"entry {i} lies beyond the newest checkpoint ({newest})"))
            if reg is None:
                check.problems.append(Problem(i, f"entry {i} ({row.action}) names a registration that "
                                                 "report_numbers no longer holds"))
                continue
            if reg.salt != row.salt or reg.batch_id != row.batch_id or reg.quarter != row.quarter:
                check.problems.append(Problem(i, f"entry {i}'s registration has changed (batch, quarter or salt)"))
            if row.action == "register":
                if reg.registered_at != row.at:
                    check.problems.append(Problem(i, f"entry {i}: the registration's time was changed "
                                                     f"(logged {row.at.isoformat()}, now {reg.registered_at.isoformat()})"))
                if reg.withdrawn_at is not None:
                    withdrawn_rows[key] = i
            else:
                last_change[key] = (row.action, row.at, i)
        check.entries = expected
    for cp_size in roots:
        if cp_size > expected:
            check.problems.append(Problem(expected, f"checkpoint {cp_size} covers more entries than the log holds "
                                                    f"({expected})"))
    for key, register_index in withdrawn_rows.items():
        action = last_change.get(key)
        if action is None or action[0] != "withdraw":
            check.problems.append(Problem(register_index, f"entry {register_index}'s registration is withdrawn, "
                                                          "but the log never recorded that withdrawal"))
    if last_change:
        keys = list(last_change)
        for part in range(0, len(keys), 1000):
            batch = keys[part:part + 1000]
            states = {(r.number, r.institution_id): r.withdrawn_at for r in session.execute(
                select(ReportNumber.number, ReportNumber.institution_id, ReportNumber.withdrawn_at)
                .where(ReportNumber.number.in_({k[0] for k in batch})))}
            for key in batch:
                action, at, index = last_change[key]
                if key not in states:
                    continue  # reported above
                if action == "withdraw" and states[key] != at:
                    check.problems.append(Problem(index, f"entry {index} withdrew the registration; the table "
                                                         "says otherwise"))
                if action == "restore" and states[key] is not None:
                    check.problems.append(Problem(index, f"entry {index} restored the registration; the table "
                                                         "says it is withdrawn"))
    unlogged = session.execute(
        select(ReportNumber.number, ReportNumber.institution_id, ReportNumber.batch_id)
        .where(~select(LogEntry.leaf_index).where(LogEntry.number == ReportNumber.number,
                                                  LogEntry.institution_id == ReportNumber.institution_id,
                                                  LogEntry.action == "register").exists(),
               ~select(PendingEntry.id).where(PendingEntry.number == ReportNumber.number,
                                              PendingEntry.institution_id == ReportNumber.institution_id,
                                              PendingEntry.action == "register").exists(),
               # a registration whose batch still has a span waiting counts as pending (its entry
               # is in one of them: the span is written with its rows, in their transaction)
               ~select(PendingEntry.id).where(PendingEntry.batch_id == ReportNumber.batch_id,
                                              PendingEntry.institution_id == ReportNumber.institution_id,
                                              PendingEntry.numbers.is_not(None)).exists())
        .limit(20)).all()
    for number, institution_id, batch_id in unlogged:
        check.problems.append(Problem(expected, f"report_numbers holds {number} of {usccs.get(institution_id)} "
                                                f"(batch {batch_id}), which the log never recorded"))
    return check

"""The transparency log service: integrating pending entries (the key holder only), and serving
checkpoints, proofs and entries from what is stored (every host).

Entries are written to ``tlog_pending`` in the transaction of the change they record (registry/registration:
the loaders and withdraw/restore); :meth:`TransparencyLog.integrate` takes
them in commit order, gives each the next leaf index, stores its hashes in tiles and signs a new
checkpoint, all in one transaction per chunk. Integrating refuses to sign a tree whose stored
hashes no longer reproduce the previous checkpoint's root: the log only ever grows.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Callable, Sequence

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from registry.institutions.models import Institution

from .entries import commitment, entry_text, fast_entry_text
from .merkle import Tree, leaf_hash
from .models import LogEntry, PendingEntry, StoredCheckpoint, VerifierKey
from .note import Checkpoint, Signer, sign_checkpoint
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
        taken = session.execute(
            delete(PendingEntry)
            .where(PendingEntry.id.in_(select(PendingEntry.id).order_by(PendingEntry.id).limit(chunk)))
            .returning(PendingEntry.id, PendingEntry.action, PendingEntry.number, PendingEntry.institution_id,
                       PendingEntry.batch_id, PendingEntry.quarter, PendingEntry.at, PendingEntry.salt)
        ).all()
        taken.sort(key=lambda row: row.id)
        if taken:
            usccs = self._usccs(session, {row.institution_id for row in taken})
            rows, leaves = [], []
            for offset, row in enumerate(taken):
                digest = commitment(usccs[row.institution_id], row.number, row.salt)
                entry = fast_entry_text(action=row.action, at=row.at, batch=row.batch_id, commitment=digest,
                                        quarter=row.quarter)
                leaves.append(leaf_hash(entry.encode()))
                rows.append({"leaf_index": size + offset, "action": row.action, "number": row.number,
                             "institution_id": row.institution_id, "batch_id": row.batch_id,
                             "quarter": row.quarter, "at": row.at, "salt": row.salt, "commitment": digest})
            session.connection().execute(insert(LogEntry.__table__), rows)
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

    def pending_count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(PendingEntry))

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
        out: list[dict] = []
        with self._sessions() as session:
            newest = self._newest(session)
            size = newest.size if newest is not None else 0
            tree = Tree(TileReader(session))
            for number, institution_id, uscc in registrations:
                stored = session.scalars(select(LogEntry).where(
                    LogEntry.number == number, LogEntry.institution_id == institution_id).order_by(LogEntry.leaf_index))
                for row in stored:
                    item = {"entry": text_of(row), "uscc": uscc, "number": number, "salt": b64(row.salt),
                            "sha256": None}
                    if row.leaf_index < size:
                        item.update(leaf_index=row.leaf_index,
                                    inclusion=[b64(h) for h in tree.inclusion(row.leaf_index, size)])
                    else:
                        item["pending"] = True
                    out.append(item)
                waiting = session.scalars(select(PendingEntry).where(
                    PendingEntry.number == number, PendingEntry.institution_id == institution_id)
                    .order_by(PendingEntry.id))
                for row in waiting:
                    digest = commitment(uscc, number, row.salt)
                    out.append({"entry": entry_text(action=row.action, at=row.at, batch=row.batch_id,
                                                    commitment=digest, quarter=row.quarter),
                                "pending": True, "uscc": uscc, "number": number, "salt": b64(row.salt),
                                "sha256": None})
        return {"checkpoint": newest.note if newest is not None else None, "entries": out}


def text_of(row: LogEntry) -> str:
    """The entry text of a stored entry (its commitment as stored)."""
    return fast_entry_text(action=row.action, at=row.at, batch=row.batch_id, commitment=row.commitment,
                           quarter=row.quarter)

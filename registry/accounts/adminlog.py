"""The sealed admin log: every admin action (an account created, disabled, enabled, its password
reset; a holiday added or deleted) is one ``admin_log`` row in an HMAC chain of its own.

It is a sibling of the complaint audit chain (``registry/complaints/audit.py``) and is built the
same way: ``mac`` = HMAC-SHA256(key, canonical(seq, at, actor, action, target, detail) ‖ mac of
seq−1), sequence numbers from a counter row in ``registry_state`` (incremented first, so
concurrent writers never fork the chain), and the newest ``(seq, mac)`` kept outside the
database in the same kind of head as the complaint chain (a Redis hash or a file), only ever
moving forward. Editing an entry breaks its seal; deleting one leaves a gap; deleting the newest
ones leaves the database behind the head.

Keys: the admin log uses the complaint chain's key ring (``AUDIT_KEYS`` newest first, else
``AUDIT_KEY``, then the key derived from ``SECRET_KEY``; :func:`registry.complaints.audit.keyring`),
each key through a subkey used for nothing else (:func:`admin_log_key`), so a complaint event's MAC
can never pass as an admin-log MAC. New entries are sealed with the newest key and record its id
(``key_id``, which the seal covers); verification picks the key by that id, so old entries stay
verifiable after a rotation as long as their key stays in the ring, and an entry whose key was
removed is reported by that key's id. Entries sealed before migration 0010 name no key (``key_id``
NULL, the seal without it) and verify against every key of the ring.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Sequence

from sqlalchemy import event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.models import AdminLogEntry
from registry.complaints.audit import AuditKey, key_id_for
from registry.infra.base import RegistryState

log = logging.getLogger(__name__)

ADMIN_LOG_SEQ = "admin_log_seq"
REDIS_HEAD_KEY = "rnr:adminlog:head"
GENESIS = ""
_HEAD_INFO = "admin_log_head"


def admin_log_key(chain_key: bytes, label: bytes = b"admin-log:v1") -> bytes:
    """The admin log's key (or, with another ``label``, a sibling log's): a subkey of the audit
    chain key used for nothing else."""
    return hmac.new(chain_key, label, hashlib.sha256).digest()


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def entry_mac(key: bytes, *, seq: int, at: dt.datetime, actor: str, action: str, target: str,
              detail: str | None, prev_mac: str, key_id: str | None = None) -> str:
    """The seal of one entry; with ``key_id`` (entries since migration 0010) the key id is sealed too."""
    fields = [seq, _iso(at), actor, action, target, detail, prev_mac]
    if key_id is not None:
        fields = ["v2", key_id, *fields]
    payload = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class LogProblem:
    entry_id: int | None
    seq: int | None
    message: str


@dataclass
class LogCheck:
    checked: int = 0
    last_seq: int = 0
    head: tuple[int, str] | None = None
    problems: list[LogProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class LogPage:
    entries: list[AdminLogEntry]
    page: int
    pages: int
    total: int


class AdminLog:
    """Seals admin actions (:meth:`record`) and checks them (:meth:`verify`).

    A sibling log (the statistics filings' trail, registry/statistics/trail.py) is the same class
    with its own entry model (the same sealed columns), counter row, subkey label and head.

    ``keys`` is the audit key ring, newest first (:func:`registry.complaints.audit.keyring`): the
    log seals with the admin-log subkey of the first and verifies with the subkey of the key an
    entry names. ``key`` is a single admin-log key, used as it is (its id a digest of it)."""

    model: type = AdminLogEntry  # the entry table (seq, at, actor, action, target, detail, mac, key_id)
    counter: str = ADMIN_LOG_SEQ  # its counter row in registry_state
    label: bytes = b"admin-log:v1"  # the subkey of each audit key it seals with
    head_info: str = _HEAD_INFO

    def __init__(self, *, key: bytes | None = None, keys: Sequence[AuditKey] | None = None, head,
                 clock=None) -> None:
        if keys:
            ring = [(k.id, admin_log_key(k.secret, self.label)) for k in keys]
        elif key is not None:
            ring = [(key_id_for(key), key)]
        else:
            raise ValueError("the admin log needs a key")
        self._ring = ring
        self._by_id = dict(ring)
        self.head = head  # a ChainHead (registry/complaints/audit.py): read() / advance(seq, mac)
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    def install(self, sessions: sessionmaker[Session]) -> None:
        """Move the head forward after each commit that sealed entries."""
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def record(self, session: Session, *, actor: str, action: str, target: str,
               detail: str | None = None, **columns) -> AdminLogEntry:
        """Seal one entry into ``session``'s transaction (committed with the action it records);
        ``columns`` are a sibling model's own (unsealed) columns, such as the filing it is about."""
        seq = _bump_counter(session, self.counter)
        model = self.model
        prev = session.scalar(select(model.mac).where(model.seq == seq - 1)) if seq > 1 else None
        at = self._clock()
        kid, key = self._ring[0]
        entry = model(**columns, seq=seq, at=at, actor=actor[:64], action=action[:32], target=target[:100],
                              detail=detail, key_id=kid)
        entry.mac = entry_mac(key, seq=seq, at=at, actor=entry.actor, action=entry.action,
                              target=entry.target, detail=detail, prev_mac=prev or GENESIS, key_id=kid)
        session.add(entry)
        session.info[self.head_info] = (seq, entry.mac)
        return entry

    def _after_commit(self, session: Session) -> None:
        head = session.info.pop(self.head_info, None)
        if head is None:
            return
        try:
            self.head.advance(*head)
        except Exception:  # the log in the database is sealed; a lagging head only weakens truncation checks
            log.exception("could not advance the admin log head to seq %s", head[0])

    def _after_rollback(self, session: Session) -> None:
        session.info.pop(self.head_info, None)

    @property
    def key_id(self) -> str:
        """The id of the key new entries are sealed with."""
        return self._ring[0][0]

    def check_seal(self, entry: AdminLogEntry, prev_mac: str) -> str:
        """``ok``, ``altered``, or ``unknown_key`` (it names a key that is not configured)."""
        def sealed_with(key: bytes, key_id: str | None) -> bool:
            want = entry_mac(key, seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action,
                             target=entry.target, detail=entry.detail, prev_mac=prev_mac, key_id=key_id)
            return hmac.compare_digest(want, entry.mac or "")

        if entry.key_id is None:  # sealed before migration 0010: any configured key may have sealed it
            return "ok" if any(sealed_with(key, None) for _, key in self._ring) else "altered"
        key = self._by_id.get(entry.key_id)
        if key is None:
            return "unknown_key"
        return "ok" if sealed_with(key, entry.key_id) else "altered"

    def page(self, session: Session, page: int = 1, per_page: int = 50) -> LogPage:
        """Newest first."""
        model = self.model
        total = int(session.scalar(select(func.count()).select_from(model)) or 0)
        pages = max(1, -(-total // per_page))
        page = min(max(1, page), pages)
        entries = list(session.scalars(select(model).order_by(model.seq.desc())
                                       .offset((page - 1) * per_page).limit(per_page)))
        return LogPage(entries, page, pages, total)

    def verify(self, session: Session, *, batch: int = 1000) -> LogCheck:
        result = LogCheck(head=self.head.read())
        expected, prev, last_id = 1, GENESIS, None
        rows = session.execute(select(self.model).order_by(self.model.seq)
                               .execution_options(yield_per=batch)).scalars()
        for entry in rows:
            result.checked += 1
            if entry.seq > expected:
                gap = f"{expected}" if entry.seq == expected + 1 else f"{expected}–{entry.seq - 1}"
                result.problems.append(LogProblem(entry.id, entry.seq,
                                                  f"entry {entry.id}: the entries before it (seq {gap}) were deleted"))
            else:
                verdict = self.check_seal(entry, prev)
                if verdict == "unknown_key":  # an unverifiable seal proves nothing: a problem like an edit
                    result.problems.append(LogProblem(entry.id, entry.seq,
                                                      f"entry {entry.id} (seq {entry.seq}, {entry.action} "
                                                      f"{entry.target}) names the key {entry.key_id!r}, which is "
                                                      "not configured: add that key to AUDIT_KEYS (or the entry "
                                                      "was altered)"))
                elif verdict != "ok":
                    result.problems.append(LogProblem(entry.id, entry.seq,
                                                      f"entry {entry.id} (seq {entry.seq}, {entry.action} "
                                                      f"{entry.target}) was altered: its seal does not match"
                                                      + ("" if entry.key_id is not None else
                                                         " any configured key (it names none: sealed before "
                                                         "key ids, perhaps with a key since removed)")))
            prev, expected, last_id = entry.mac or GENESIS, entry.seq + 1, entry.id
            session.expunge(entry)
        result.last_seq = expected - 1
        head = result.head
        if head is None:
            if result.checked:
                result.problems.append(LogProblem(None, None, "the admin log head is missing: "
                                                  "truncation cannot be ruled out"))
        elif head[0] > result.last_seq:
            result.problems.append(LogProblem(last_id, head[0], f"entries after seq {result.last_seq} up to "
                                              f"seq {head[0]} were deleted (truncated log)"))
        else:
            at_head = session.scalar(select(self.model.mac).where(self.model.seq == head[0]))
            if at_head is not None and not hmac.compare_digest(at_head, head[1]):
                result.problems.append(LogProblem(None, head[0], f"the entry at seq {head[0]} is not the one "
                                                  "the head recorded"))
        return result


def _bump_counter(session: Session, counter: str = ADMIN_LOG_SEQ) -> int:
    """Add one to the log's counter row and return its new value (the row stays locked)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RegistryState).values(key=counter, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": RegistryState.value + 1})
    session.execute(stmt)
    return int(session.scalar(select(RegistryState.value).where(RegistryState.key == counter)))

"""Tamper evidence for complaint trails: every event is sealed into one HMAC chain.

Design:

- **Chain.** Each ``complaint_events`` row gets a ``seq`` (1, 2, 3 … across all complaints, in
  commit order) and a ``mac`` = HMAC-SHA256(key, canonical(seq, complaint_id, at, kind, actor,
  public, note) ‖ mac of seq−1). Editing any sealed field breaks that event's MAC; deleting an
  event leaves a gap in ``seq``; moving one to another complaint breaks its MAC.
- **Key outside the database.** ``AUDIT_KEY`` if set, else derived from ``SECRET_KEY`` (which
  lives in the environment or ``instance/secret_key``): someone with only database access cannot
  compute a valid MAC, so cannot rewrite or re-forge the chain.
- **Head outside the database.** The newest ``(seq, mac)`` is kept apart — a Redis key when
  ``REDIS_URL`` is set (shared by every host), else a file under ``FILES_DIR/audit/`` — and only
  ever moves forward. Deleting the newest events (truncation) leaves the database's last ``seq``
  behind the head. The head is written after commit, so it may lag by the last commit if a process
  dies in between; events beyond the head are accepted when their MACs chain correctly (they
  cannot be forged without the key).
- **Sealing.** :meth:`AuditChain.install` hooks the session factory: whoever adds a
  ``ComplaintEvent`` (public intake, casework, CLI) gets it sealed in ``before_flush``. Sequence
  numbers come from a counter row in ``registry_state`` that is incremented first, which takes a
  row lock (PostgreSQL) or the write lock (SQLite), so concurrent writers never fork the chain.
"""
from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from sqlalchemy import event, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from registry.complaints.models import ComplaintEvent

from registry.infra.base import RegistryState

log = logging.getLogger(__name__)

AUDIT_SEQ = "audit_seq"
GENESIS = ""
REDIS_HEAD_KEY = "rnr:audit:head"


def derive_key(*, secret_key: str, audit_key: str = "") -> bytes:
    """The chain key: ``AUDIT_KEY`` as given, else a subkey of ``SECRET_KEY`` used for nothing else."""
    if audit_key:
        return audit_key.encode()
    if not secret_key:
        raise ValueError("an audit key needs SECRET_KEY or AUDIT_KEY")
    return hmac.new(secret_key.encode(), b"complaint-audit-chain:v1", hashlib.sha256).digest()


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def compute_mac(key: bytes, *, seq: int, complaint_id: int, at: dt.datetime, kind: str, actor: str,
                public: bool, note: str | None, prev_mac: str) -> str:
    payload = json.dumps(
        [seq, complaint_id, _iso(at), kind, actor, bool(public), note, prev_mac],
        ensure_ascii=False, separators=(",", ":"),
    ).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


# --- the head, kept outside the database --------------------------------------------------------
class ChainHead(Protocol):
    def read(self) -> tuple[int, str] | None: ...
    def advance(self, seq: int, mac: str) -> None: ...


class FileChainHead:
    """``{"seq", "mac"}`` in a file, replaced atomically under an exclusive lock; never moves back."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / "chain-head.json"
        self._lock_path = Path(folder) / "chain-head.lock"

    def read(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return int(data["seq"]), str(data["mac"])

    def advance(self, seq: int, mac: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            if current is not None and current[0] >= seq:
                return
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "w") as fh:
                json.dump({"seq": seq, "mac": mac}, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)


_ADVANCE_LUA = """
local cur = redis.call('HGET', KEYS[1], 'seq')
if (not cur) or tonumber(cur) < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'mac', ARGV[2])
  return 1
end
return 0
"""


class RedisChainHead:
    """The head as a Redis hash shared by every host; a script keeps it monotonic."""

    def __init__(self, client, key: str = REDIS_HEAD_KEY) -> None:
        self._client = client
        self._key = key
        self._advance = client.register_script(_ADVANCE_LUA)

    def read(self) -> tuple[int, str] | None:
        data = self._client.hgetall(self._key)
        if not data:
            return None
        return int(data[b"seq"]), data[b"mac"].decode()

    def advance(self, seq: int, mac: str) -> None:
        self._advance(keys=[self._key], args=[seq, mac])


# --- verification results -----------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    event_id: int | None
    seq: int | None
    kind: str  # altered | missing | unsealed | truncated | head_missing | head_mismatch | duplicate
    message: str


@dataclass
class VerifyResult:
    checked: int = 0
    last_seq: int = 0
    head: tuple[int, str] | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None


class AuditChain:
    def __init__(self, *, key: bytes, head: ChainHead) -> None:
        self._key = key
        self.head = head

    # --- sealing ------------------------------------------------------------------------------
    def install(self, sessions: sessionmaker[Session]) -> None:
        """Seal every ``ComplaintEvent`` flushed by sessions of this factory; move the head on commit."""
        event.listen(sessions, "before_flush", self._before_flush)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def seal(self, session: Session, events: list[ComplaintEvent]) -> None:
        """Give ``events`` (in this order) the next sequence numbers and their MACs."""
        if not events:
            return
        last = _bump_counter(session, len(events))
        seq = last - len(events) + 1
        prev = session.scalar(select(ComplaintEvent.mac).where(ComplaintEvent.seq == seq - 1)) if seq > 1 else None
        prev = prev or GENESIS
        for ev in events:
            if ev.complaint_id is None:
                raise ValueError("a complaint event needs its complaint_id before it is flushed")
            if ev.at is None:
                ev.at = dt.datetime.now(dt.timezone.utc)
            if ev.public is None:
                ev.public = False
            ev.seq = seq
            ev.mac = compute_mac(self._key, seq=seq, complaint_id=ev.complaint_id, at=ev.at, kind=ev.kind,
                                 actor=ev.actor, public=ev.public, note=ev.note, prev_mac=prev)
            prev = ev.mac
            seq += 1
        session.info["audit_head"] = (last, prev)

    def _before_flush(self, session: Session, _context, _instances) -> None:
        new = [o for o in session.new if isinstance(o, ComplaintEvent) and o.mac is None]
        new.sort(key=lambda o: inspect(o).insert_order)
        self.seal(session, new)

    def _after_commit(self, session: Session) -> None:
        head = session.info.pop("audit_head", None)
        if head is None:
            return
        try:
            self.head.advance(*head)
        except Exception:  # the chain in the database is sealed; a lagging head only weakens truncation checks
            log.exception("could not advance the audit chain head to seq %s", head[0])

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop("audit_head", None)

    # --- checking -----------------------------------------------------------------------------
    def mac_ok(self, ev: ComplaintEvent, prev_mac: str) -> bool:
        expected = compute_mac(self._key, seq=ev.seq, complaint_id=ev.complaint_id, at=ev.at, kind=ev.kind,
                               actor=ev.actor, public=ev.public, note=ev.note, prev_mac=prev_mac)
        return hmac.compare_digest(expected, ev.mac or "")

    def verify(self, session: Session, *, batch: int = 1000) -> VerifyResult:
        """Walk the whole chain in ``seq`` order; list every problem, the first one first."""
        result = VerifyResult(head=self.head.read())
        expected_seq, prev_mac, last_id = 1, GENESIS, None
        rows = session.execute(
            select(ComplaintEvent).where(ComplaintEvent.seq.is_not(None)).order_by(ComplaintEvent.seq)
            .execution_options(yield_per=batch)
        ).scalars()
        for ev in rows:
            result.checked += 1
            if ev.seq < expected_seq:
                result.problems.append(Problem(ev.id, ev.seq, "duplicate",
                                               f"event {ev.id}: sequence number {ev.seq} is used twice"))
                continue
            if ev.seq > expected_seq:
                missing = f"{expected_seq}" if ev.seq == expected_seq + 1 else f"{expected_seq}–{ev.seq - 1}"
                result.problems.append(Problem(ev.id, ev.seq, "missing",
                                               f"event {ev.id}: the event(s) before it (seq {missing}) were deleted"))
                # its predecessor's MAC went with the deleted event, so its own seal cannot be checked
            elif not self.mac_ok(ev, prev_mac):
                result.problems.append(Problem(ev.id, ev.seq, "altered",
                                               f"event {ev.id} (seq {ev.seq}, complaint {ev.complaint_id}) "
                                               "was altered: its seal does not match its content"))
            prev_mac, expected_seq, last_id = ev.mac or GENESIS, ev.seq + 1, ev.id
            session.expunge(ev)
        result.last_seq = expected_seq - 1
        for ev_id in session.scalars(select(ComplaintEvent.id).where(ComplaintEvent.seq.is_(None))
                                     .order_by(ComplaintEvent.id)):
            result.problems.append(Problem(ev_id, None, "unsealed",
                                           f"event {ev_id} has no seal: it was written outside the audited path"))
        head = result.head
        if head is None:
            if result.checked:
                result.problems.append(Problem(None, None, "head_missing",
                                               "the chain head is missing: truncation cannot be ruled out"))
        elif head[0] > result.last_seq:
            after = f"after event {last_id} (seq {result.last_seq})" if last_id else "from the start"
            result.problems.append(Problem(last_id, head[0], "truncated",
                                           f"events {after} up to seq {head[0]} were deleted (truncated trail)"))
        else:
            at_head = session.scalar(select(ComplaintEvent).where(ComplaintEvent.seq == head[0]))
            if at_head is not None and not hmac.compare_digest(at_head.mac or "", head[1]):
                result.problems.append(Problem(at_head.id, head[0], "head_mismatch",
                                               f"event {at_head.id} (seq {head[0]}) is not the event the chain head recorded"))
        return result

    def intact_for(self, session: Session, complaint_id: int) -> bool:
        """Whether one complaint's events carry valid seals (for the trail page; no head check)."""
        events = session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == complaint_id)
                                 .order_by(ComplaintEvent.seq)).all()
        if not events:
            return True
        if any(e.seq is None for e in events):
            return False
        wanted = [e.seq - 1 for e in events]
        prevs = dict(session.execute(select(ComplaintEvent.seq, ComplaintEvent.mac)
                                     .where(ComplaintEvent.seq.in_(wanted))).all())
        for e in events:
            prev = GENESIS if e.seq == 1 else prevs.get(e.seq - 1)
            if prev is None or not self.mac_ok(e, prev):
                return False
        return True


def _bump_counter(session: Session, n: int) -> int:
    """Add ``n`` to the chain's counter row and return its new value (the row stays locked)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RegistryState).values(key=AUDIT_SEQ, value=n)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": RegistryState.value + n})
    session.execute(stmt)
    return int(session.scalar(select(RegistryState.value).where(RegistryState.key == AUDIT_SEQ)))


def chain_for(*, secret_key: str, audit_key: str = "", files_dir: Path, redis=None) -> AuditChain:
    """The chain as configured: Redis head when Redis is configured, else a file under FILES_DIR."""
    head: ChainHead = RedisChainHead(redis) if redis is not None else FileChainHead(Path(files_dir) / "audit")
    return AuditChain(key=derive_key(secret_key=secret_key, audit_key=audit_key), head=head)


def count_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ComplaintEvent)) or 0)


__all__ = [
    "AuditChain", "ChainHead", "FileChainHead", "Problem", "RedisChainHead", "VerifyResult", "chain_for",
    "compute_mac", "derive_key",
]

"""Tamper evidence for complaint trails: every event is sealed into one HMAC chain.

Design:

- **Chain.** Each ``complaint_events`` row gets a ``seq`` (1, 2, 3 … across all complaints, in
  commit order), a ``cseq`` (1, 2, 3 … within its complaint), a ``state`` (the digest of its
  complaint's content after the event: :func:`complaint_state`) and a ``mac`` =
  HMAC-SHA256(key, canonical(version, key id, seq, complaint_id, cseq, at, kind, actor, public,
  note, state) ‖ mac of seq−1). Editing any sealed field breaks that event's MAC; deleting an
  event leaves a gap in ``seq`` and in its complaint's ``cseq``; moving one to another complaint
  breaks its MAC.
- **The complaint row too.** Status, finding, description, routing, verdict and the personal
  fields live in ``complaints``/``complaint_findings``; they change only together with an event,
  whose ``state`` seals them. A row that no longer matches the state of its complaint's newest
  event was changed around the chain (``verify`` and :meth:`AuditChain.intact_for` say so). Name
  and contact enter the state as hashes salted with the complaint's ``personal_salt``; erasing
  them and the salt is itself an event (``personal_data_redacted``), after which the chain still
  verifies and nothing left in it can be matched against a guessed name or phone number.
- **Versions.** Events sealed before migration 0008 (``chain_version`` NULL) keep their version 1
  seal (no cseq, no state, no key id) and verify as before; a complaint whose newest event is of
  version 1 has no sealed state to check its row against until its next event.
- **Keys outside the database.** ``AUDIT_KEYS`` (newest first) or ``AUDIT_KEY``, else a key
  derived from ``SECRET_KEY`` (which lives in the environment or ``instance/secret_key``):
  someone with only database access cannot compute a valid MAC, so cannot rewrite or re-forge the
  chain. Each event records the id of the key that sealed it (new events: the newest key), so
  older keys stay usable for verification after a rotation; an event whose key is not
  configured is reported as such, not as altered.
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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from sqlalchemy import event, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from registry.complaints.models import Complaint, ComplaintEvent, ComplaintFinding

from registry.infra.base import RegistryState

log = logging.getLogger(__name__)

AUDIT_SEQ = "audit_seq"
GENESIS = ""
REDIS_HEAD_KEY = "rnr:audit:head"


CHAIN_VERSION = 2
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


def derive_key(*, secret_key: str, audit_key: str = "") -> bytes:
    """The chain key: ``AUDIT_KEY`` as given, else a subkey of ``SECRET_KEY`` used for nothing else."""
    if audit_key:
        return audit_key.encode()
    if not secret_key:
        raise ValueError("an audit key needs SECRET_KEY or AUDIT_KEY")
    return hmac.new(secret_key.encode(), b"complaint-audit-chain:v1", hashlib.sha256).digest()


@dataclass(frozen=True)
class AuditKey:
    """One chain key and the id events sealed with it record (``key_id``)."""

    id: str
    secret: bytes = field(repr=False)


def key_id_for(secret: bytes) -> str:
    """The id of a key given without one: a short digest of it (says nothing usable about it)."""
    return hashlib.sha256(b"rnr-audit-key-id:" + secret).hexdigest()[:12]


def parse_audit_keys(text: str) -> list[AuditKey]:
    """``AUDIT_KEYS``: comma-separated, newest first, each ``id:secret`` or a bare secret (its id
    then a digest of it). Raises ValueError on an empty entry or a repeated id."""
    keys: list[AuditKey] = []
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError("AUDIT_KEYS has an empty entry: write id:secret (or secret) separated by commas")
        kid, sep, secret = entry.partition(":")
        if sep and _KEY_ID_RE.match(kid) and secret:
            key = AuditKey(kid, secret.encode())
        else:
            key = AuditKey(key_id_for(entry.encode()), entry.encode())
        if any(k.id == key.id for k in keys):
            raise ValueError(f"AUDIT_KEYS names the key id {key.id!r} twice")
        keys.append(key)
    return keys


def keyring(*, secret_key: str, audit_key: str = "", audit_keys: str = "") -> list[AuditKey]:
    """The chain's keys, the sealing key first: ``AUDIT_KEYS``, else ``AUDIT_KEY``, else the key
    derived from ``SECRET_KEY``. The derived key stays last for verifying events it sealed before
    an explicit key was set (as long as ``SECRET_KEY`` is the same)."""
    if audit_keys:
        keys = parse_audit_keys(audit_keys)
    elif audit_key:
        secret = audit_key.encode()
        keys = [AuditKey(key_id_for(secret), secret)]
    else:
        keys = []
    if secret_key:
        derived = derive_key(secret_key=secret_key)
        if all(k.secret != derived for k in keys):
            keys.append(AuditKey(key_id_for(derived), derived))
    if not keys:
        raise ValueError("an audit key needs SECRET_KEY, AUDIT_KEY or AUDIT_KEYS")
    return keys


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def compute_mac(key: bytes, *, seq: int, complaint_id: int, at: dt.datetime, kind: str, actor: str,
                public: bool, note: str | None, prev_mac: str) -> str:
    """The version 1 seal (events sealed before migration 0008)."""
    payload = json.dumps(
        [seq, complaint_id, _iso(at), kind, actor, bool(public), note, prev_mac],
        ensure_ascii=False, separators=(",", ":"),
    ).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def compute_mac_v2(key: bytes, *, key_id: str, seq: int, complaint_id: int, cseq: int, at: dt.datetime,
                   kind: str, actor: str, public: bool, note: str | None, state: str | None,
                   prev_mac: str) -> str:
    """The version 2 seal: also the key id, the place in the complaint's trail and its state."""
    payload = json.dumps(
        ["v2", key_id, seq, complaint_id, cseq, _iso(at), kind, actor, bool(public), note, state, prev_mac],
        ensure_ascii=False, separators=(",", ":"),
    ).encode()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def personal_digest(salt: str | None, value: str | None) -> str | None:
    """A personal field as the chain sees it: salted, so a guess cannot be checked without the salt."""
    if value is None:
        return None
    return hashlib.sha256(f"{salt or ''}\x00{value}".encode()).hexdigest()


def complaint_state(complaint: Complaint, finding: ComplaintFinding | None) -> str:
    """The digest of everything about a complaint that only its trail may change."""
    doc = {
        "number": complaint.number,
        "institution": [complaint.institution_text, complaint.institution_id],
        "authority_id": complaint.authority_id,
        "category": complaint.category,
        "description": complaint.description,
        "name": personal_digest(complaint.personal_salt, complaint.complainant_name),
        "contact": personal_digest(complaint.personal_salt, complaint.complainant_contact),
        "attachment": [complaint.attachment_path, complaint.attachment_type],
        "verdict": [complaint.verdict_status, complaint.verdict_json],
        "status": complaint.status,
        "created_at": _iso(complaint.created_at) if complaint.created_at else None,
        "finding": [finding.finding, finding.concluded_by] if finding is not None else None,
    }
    text = json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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
    # altered (also: sealed with a key that is not configured) | missing | unsealed | truncated
    # | head_missing | head_mismatch | duplicate | row_altered (a complaint row that no longer matches the state its newest event sealed)
    kind: str
    message: str
    complaint_id: int | None = None


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
    """Seals complaint events (:meth:`install`) and checks them (:meth:`verify`, :meth:`intact_for`).

    ``key`` is a single key (its id then a digest of it); ``keys`` a key ring, newest first: new
    events are sealed with the first, every key verifies the events that name it."""

    def __init__(self, *, key: bytes | None = None, head: ChainHead, keys: Sequence[AuditKey] | None = None,
                 configured: bool = True) -> None:
        if keys:
            ring = list(keys)
        elif key is not None:
            ring = [AuditKey(key_id_for(key), key)]
        else:
            raise ValueError("an audit chain needs a key")
        self._keys = ring
        self._by_id = {k.id: k.secret for k in ring}
        self._key = ring[0].secret
        self.head = head
        # False when the key is derived from SECRET_KEY (no AUDIT_KEY/AUDIT_KEYS): rotating
        # SECRET_KEY would then orphan every seal
        self.configured = configured

    @property
    def key_id(self) -> str:
        """The id of the key new events are sealed with."""
        return self._keys[0].id

    @property
    def key_ids(self) -> list[str]:
        return [k.id for k in self._keys]

    # --- sealing ------------------------------------------------------------------------------
    def install(self, sessions: sessionmaker[Session]) -> None:
        """Seal every ``ComplaintEvent`` flushed by sessions of this factory; move the head on commit."""
        event.listen(sessions, "before_flush", self._before_flush)
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def seal(self, session: Session, events: list[ComplaintEvent]) -> None:
        """Give ``events`` (in this order) the next sequence numbers, their complaint's next
        positions and state, and their MACs."""
        if not events:
            return
        for ev in events:
            if ev.complaint_id is None:
                raise ValueError("a complaint event needs its complaint_id before it is flushed")
        last = _bump_counter(session, len(events))
        seq = last - len(events) + 1
        prev = session.scalar(select(ComplaintEvent.mac).where(ComplaintEvent.seq == seq - 1)) if seq > 1 else None
        prev = prev or GENESIS
        states: dict[int, str] = {}
        positions: dict[int, int] = {}
        kid, key = self._keys[0].id, self._key
        for ev in events:
            cid = ev.complaint_id
            if cid not in states:
                states[cid] = _state_in_session(session, cid)
                positions[cid] = int(session.scalar(
                    select(func.max(ComplaintEvent.cseq)).where(ComplaintEvent.complaint_id == cid)) or 0)
            positions[cid] += 1
            if ev.at is None:
                ev.at = dt.datetime.now(dt.timezone.utc)
            if ev.public is None:
                ev.public = False
            ev.seq, ev.cseq, ev.state = seq, positions[cid], states[cid]
            ev.key_id, ev.chain_version = kid, CHAIN_VERSION
            ev.mac = compute_mac_v2(key, key_id=kid, seq=seq, complaint_id=cid, cseq=ev.cseq, at=ev.at,
                                    kind=ev.kind, actor=ev.actor, public=ev.public, note=ev.note,
                                    state=ev.state, prev_mac=prev)
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
    def check_seal(self, ev: ComplaintEvent, prev_mac: str) -> str:
        """``ok``, ``altered``, or ``unknown_key`` (sealed with a key that is not configured)."""
        if ev.chain_version is None:  # version 1: no key id recorded; any configured key may have sealed it
            for key in self._keys:
                expected = compute_mac(key.secret, seq=ev.seq, complaint_id=ev.complaint_id, at=ev.at, kind=ev.kind,
                                       actor=ev.actor, public=ev.public, note=ev.note, prev_mac=prev_mac)
                if hmac.compare_digest(expected, ev.mac or ""):
                    return "ok"
            return "altered"
        if ev.chain_version != CHAIN_VERSION or ev.cseq is None:
            return "altered"
        key = self._by_id.get(ev.key_id or "")
        if key is None:
            return "unknown_key"
        expected = compute_mac_v2(key, key_id=ev.key_id, seq=ev.seq, complaint_id=ev.complaint_id, cseq=ev.cseq,
                                  at=ev.at, kind=ev.kind, actor=ev.actor, public=ev.public, note=ev.note,
                                  state=ev.state, prev_mac=prev_mac)
        return "ok" if hmac.compare_digest(expected, ev.mac or "") else "altered"

    def mac_ok(self, ev: ComplaintEvent, prev_mac: str) -> bool:
        return self.check_seal(ev, prev_mac) == "ok"

    def verify(self, session: Session, *, batch: int = 1000) -> VerifyResult:
        """Walk the whole chain in ``seq`` order, then check every complaint row against the state
        its newest event sealed; list every problem, the first one first."""
        result = VerifyResult(head=self.head.read())
        expected_seq, prev_mac, last_id = 1, GENESIS, None
        newest: dict[int, tuple[int, str | None]] = {}  # complaint → (newest event id, its sealed state)
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
            else:
                verdict = self.check_seal(ev, prev_mac)
                if verdict == "unknown_key":  # counted as altered: an unverifiable seal proves nothing
                    result.problems.append(Problem(ev.id, ev.seq, "altered",
                                                   f"event {ev.id} (seq {ev.seq}, complaint {ev.complaint_id}) "
                                                   f"names the key {ev.key_id!r}, which is not configured: add "
                                                   "that key to AUDIT_KEYS (or the event was altered)"))
                elif verdict != "ok":
                    result.problems.append(Problem(ev.id, ev.seq, "altered",
                                                   f"event {ev.id} (seq {ev.seq}, complaint {ev.complaint_id}) "
                                                   "was altered: its seal does not match its content"))
            newest[ev.complaint_id] = (ev.id, ev.state if ev.chain_version is not None else None)
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
        result.problems.extend(self._row_problems(session, newest, batch=batch))
        return result

    def _row_problems(self, session: Session, newest: dict[int, tuple[int, str | None]], *, batch: int):
        sealed = sorted(cid for cid, (_, state) in newest.items() if state is not None)
        for start in range(0, len(sealed), batch):
            chunk = sealed[start:start + batch]
            findings = {f.complaint_id: f for f in session.scalars(
                select(ComplaintFinding).where(ComplaintFinding.complaint_id.in_(chunk))
                .execution_options(populate_existing=True))}
            complaints = session.scalars(select(Complaint).where(Complaint.id.in_(chunk)).order_by(Complaint.id)
                                         .execution_options(populate_existing=True)).all()
            for complaint in complaints:
                event_id, state = newest[complaint.id]
                if complaint_state(complaint, findings.get(complaint.id)) != state:
                    yield Problem(None, None, "row_altered",
                                  f"complaint {complaint.id} was altered: its status, finding or content no longer "
                                  f"match what its newest event {event_id} sealed", complaint_id=complaint.id)

    def intact_for(self, session: Session, complaint_id: int) -> bool:
        """Whether one complaint's trail and row are as sealed (for its trail and status pages):
        every event's seal holds, its positions run 1, 2, 3 … without a gap, the row matches the
        state its newest event sealed, and no event after its newest one is missing from the chain
        (which could have been one of its own)."""
        events = session.scalars(select(ComplaintEvent).where(ComplaintEvent.complaint_id == complaint_id)
                                 .order_by(ComplaintEvent.seq)).all()
        if any(e.seq is None for e in events):
            return False
        if [e.cseq for e in events] != list(range(1, len(events) + 1)):
            return False
        wanted = [e.seq - 1 for e in events]
        prevs = dict(session.execute(select(ComplaintEvent.seq, ComplaintEvent.mac)
                                     .where(ComplaintEvent.seq.in_(wanted))).all())
        for e in events:
            prev = GENESIS if e.seq == 1 else prevs.get(e.seq - 1)
            if prev is None or not self.mac_ok(e, prev):
                return False
        if events and events[-1].chain_version is not None:
            complaint = session.get(Complaint, complaint_id, populate_existing=True)
            if complaint is None:
                return False
            finding = session.get(ComplaintFinding, complaint_id, populate_existing=True)
            if complaint_state(complaint, finding) != events[-1].state:
                return False
        return self._complete_after(session, events[-1].seq if events else 0)

    def _complete_after(self, session: Session, seq: int) -> bool:
        """No event sealed after ``seq`` is missing (counted against the database and the head)."""
        top = int(session.scalar(select(func.max(ComplaintEvent.seq))) or 0)
        try:
            head = self.head.read()
        except Exception:  # noqa: BLE001 - the head's store is down: judge by the database alone
            log.warning("the audit chain head could not be read", exc_info=True)
            head = None
        if head is not None:
            top = max(top, head[0])
        if top <= seq:
            return True
        count = int(session.scalar(select(func.count()).select_from(ComplaintEvent).where(ComplaintEvent.seq > seq)))
        return count == top - seq


def _state_in_session(session: Session, complaint_id: int) -> str:
    """The state of a complaint as this flush leaves it (pending changes included)."""
    complaint = session.get(Complaint, complaint_id)
    if complaint is None:
        raise ValueError(f"complaint {complaint_id} does not exist")
    finding = next((o for o in session.new if isinstance(o, ComplaintFinding) and o.complaint_id == complaint_id),
                   None)
    if finding is None:
        finding = session.get(ComplaintFinding, complaint_id)
        if finding is not None and finding in session.deleted:
            finding = None
    return complaint_state(complaint, finding)


def _bump_counter(session: Session, n: int) -> int:
    """Add ``n`` to the chain's counter row and return its new value (the row stays locked)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RegistryState).values(key=AUDIT_SEQ, value=n)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": RegistryState.value + n})
    session.execute(stmt)
    return int(session.scalar(select(RegistryState.value).where(RegistryState.key == AUDIT_SEQ)))


def chain_for(*, secret_key: str, audit_key: str = "", files_dir: Path, redis=None,
              audit_keys: str = "") -> AuditChain:
    """The chain as configured: the key ring of :func:`keyring`; the head in Redis when Redis is
    configured, else a file under FILES_DIR."""
    head: ChainHead = RedisChainHead(redis) if redis is not None else FileChainHead(Path(files_dir) / "audit")
    keys = keyring(secret_key=secret_key, audit_key=audit_key, audit_keys=audit_keys)
    return AuditChain(keys=keys, head=head, configured=bool(audit_key or audit_keys))


def count_events(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(ComplaintEvent)) or 0)


__all__ = [
    "AuditChain", "AuditKey", "ChainHead", "FileChainHead", "Problem", "RedisChainHead", "VerifyResult", "chain_for",
    "complaint_state", "compute_mac", "compute_mac_v2", "derive_key", "key_id_for", "keyring", "parse_audit_keys",
    "personal_digest",
]

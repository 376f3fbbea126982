"""The sealed admin log: every admin action (an account created, disabled, enabled, its password
reset; a holiday added or deleted) is one ``admin_log`` row in an HMAC chain of its own.

It is a sibling of the complaint audit chain (``registry/complaints/audit.py``) and is built the
same way: ``mac`` = HMAC-SHA256(key, canonical(seq, at, actor, action, target, detail) ‖ mac of
seq−1), sequence numbers from a counter row in ``registry_state`` (incremented first, so
concurrent writers never fork the chain), and the newest ``(seq, mac)`` kept outside the
database in the same kind of head as the complaint chain (a Redis hash or a file), only ever
moving forward. The key is a subkey of the complaint chain's key, used for nothing else.
Editing an entry breaks its seal; deleting one leaves a gap; deleting the newest ones leaves the
database behind the head.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field

from sqlalchemy import event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.models import AdminLogEntry
from registry.infra.base import RegistryState

log = logging.getLogger(__name__)

ADMIN_LOG_SEQ = "admin_log_seq"
REDIS_HEAD_KEY = "rnr:adminlog:head"
GENESIS = ""
_HEAD_INFO = "admin_log_head"


def admin_log_key(chain_key: bytes) -> bytes:
    """The admin log's key: a subkey of the audit chain key."""
    return hmac.new(chain_key, b"admin-log:v1", hashlib.sha256).digest()


def _iso(moment: dt.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def entry_mac(key: bytes, *, seq: int, at: dt.datetime, actor: str, action: str, target: str,
              detail: str | None, prev_mac: str) -> str:
    payload = json.dumps([seq, _iso(at), actor, action, target, detail, prev_mac],
                         ensure_ascii=False, separators=(",", ":")).encode()
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
    def __init__(self, *, key: bytes, head, clock=None) -> None:
        self._key = key
        self.head = head  # a ChainHead (registry/complaints/audit.py): read() / advance(seq, mac)
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))

    def install(self, sessions: sessionmaker[Session]) -> None:
        """Move the head forward after each commit that sealed entries."""
        event.listen(sessions, "after_commit", self._after_commit)
        event.listen(sessions, "after_rollback", self._after_rollback)

    def record(self, session: Session, *, actor: str, action: str, target: str,
               detail: str | None = None) -> AdminLogEntry:
        """Seal one entry into ``session``'s transaction (committed with the action it records)."""
        seq = _bump_counter(session)
        prev = session.scalar(select(AdminLogEntry.mac).where(AdminLogEntry.seq == seq - 1)) if seq > 1 else None
        at = self._clock()
        entry = AdminLogEntry(seq=seq, at=at, actor=actor[:64], action=action[:32], target=target[:100],
                              detail=detail)
        entry.mac = entry_mac(self._key, seq=seq, at=at, actor=entry.actor, action=entry.action,
                              target=entry.target, detail=detail, prev_mac=prev or GENESIS)
        session.add(entry)
        session.info[_HEAD_INFO] = (seq, entry.mac)
        return entry

    def _after_commit(self, session: Session) -> None:
        head = session.info.pop(_HEAD_INFO, None)
        if head is None:
            return
        try:
            self.head.advance(*head)
        except Exception:  # the log in the database is sealed; a lagging head only weakens truncation checks
            log.exception("could not advance the admin log head to seq %s", head[0])

    @staticmethod
    def _after_rollback(session: Session) -> None:
        session.info.pop(_HEAD_INFO, None)

    def page(self, session: Session, page: int = 1, per_page: int = 50) -> LogPage:
        """Newest first."""
        total = int(session.scalar(select(func.count()).select_from(AdminLogEntry)) or 0)
        pages = max(1, -(-total // per_page))
        page = min(max(1, page), pages)
        entries = list(session.scalars(select(AdminLogEntry).order_by(AdminLogEntry.seq.desc())
                                       .offset((page - 1) * per_page).limit(per_page)))
        return LogPage(entries, page, pages, total)

    def verify(self, session: Session, *, batch: int = 1000) -> LogCheck:
        result = LogCheck(head=self.head.read())
        expected, prev, last_id = 1, GENESIS, None
        rows = session.execute(select(AdminLogEntry).order_by(AdminLogEntry.seq)
                               .execution_options(yield_per=batch)).scalars()
        for entry in rows:
            result.checked += 1
            if entry.seq > expected:
                gap = f"{expected}" if entry.seq == expected + 1 else f"{expected}–{entry.seq - 1}"
                result.problems.append(LogProblem(entry.id, entry.seq,
                                                  f"entry {entry.id}: the entries before it (seq {gap}) were deleted"))
            else:
                want = entry_mac(self._key, seq=entry.seq, at=entry.at, actor=entry.actor, action=entry.action,
                                 target=entry.target, detail=entry.detail, prev_mac=prev)
                if not hmac.compare_digest(want, entry.mac or ""):
                    result.problems.append(LogProblem(entry.id, entry.seq,
                                                      f"entry {entry.id} (seq {entry.seq}, {entry.action} "
                                                      f"{entry.target}) was altered: its seal does not match"))
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
            at_head = session.scalar(select(AdminLogEntry.mac).where(AdminLogEntry.seq == head[0]))
            if at_head is not None and not hmac.compare_digest(at_head, head[1]):
                result.problems.append(LogProblem(None, head[0], f"the entry at seq {head[0]} is not the one "
                                                  "the head recorded"))
        return result


def _bump_counter(session: Session) -> int:
    """Add one to the log's counter row and return its new value (the row stays locked)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(RegistryState).values(key=ADMIN_LOG_SEQ, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=["key"], set_={"value": RegistryState.value + 1})
    session.execute(stmt)
    return int(session.scalar(select(RegistryState.value).where(RegistryState.key == ADMIN_LOG_SEQ)))

"""Platform keys: issue (the key returned once), list with use, revoke, authenticate.

A key is random and high-entropy, so its SHA-256 is stored and looked up with one index probe
(as institution API tokens are, registry/accounts/tokens.py). Quotas count items per minute and
per day; they are counted by the verify edge, not here (this package knows nothing of HTTP)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, case, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.numbers.quarters import Clock, system_clock
from registry.platforms.models import PlatformKey
from registry.verification.models import QueryLog
from registry.verification.readers import ReadConnections, utc

KEY_PREFIX = "rnrp_"
MAX_QUOTA = 1_000_000_000


class PlatformError(ValueError):
    """A refused request to issue a key: ``code``, a Chinese and an English message."""

    def __init__(self, code: str, message_zh: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code, self.message_zh, self.message_en = code, message_zh, message_en


@dataclass(frozen=True)
class Platform:
    """A live key as the verify edge needs it."""

    id: int
    name: str
    per_minute: int
    per_day: int
    origins: tuple[str, ...]


@dataclass(frozen=True)
class PlatformUse:
    key: PlatformKey
    days: list[tuple[str, int, int]]  # (day, items, not found), newest first
    items: int
    not_found: int

    @property
    def not_found_rate(self) -> float | None:
        return self.not_found / self.items if self.items else None


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


_BY_HASH = ("SELECT id, name, per_minute, per_day, origins, revoked_at, expires_at "
            "FROM platform_keys WHERE key_hash = {}")


class PlatformService:
    def __init__(self, *, sessions: sessionmaker[Session], engine: Engine, clock: Clock = system_clock,
                 admin_log=None) -> None:
        self._sessions = sessions
        self._clock = clock
        self._log = admin_log  # an AdminLog (registry/accounts/adminlog.py): every issue and revoke is sealed
        # every bulk request authenticates: one statement on the thread's read connection, as a
        # verification's lookup (the ORM's session and compilation cost 0.3–1 ms a request)
        self._reads = ReadConnections(engine)
        self._by_hash = _BY_HASH.format("%s" if engine.dialect.name == "postgresql" else "?")

    def _record(self, session: Session, actor: str | None, action: str, key: PlatformKey, **detail) -> None:
        if self._log is not None and actor:
            self._log.record(session, actor=actor, action=action, target=f"{key.prefix}… {key.name}"[:100],
                             detail=json.dumps({"id": key.id, **detail}, ensure_ascii=False, sort_keys=True))

    def create(self, *, name: str, per_minute: int, per_day: int, days: int | None = 365,
               origins: list[str] | tuple[str, ...] = (), created_by: str | None = None) -> tuple[PlatformKey, str]:
        """Issue a key; ``created_by`` (an admin, a national regulator, ``cli``) seals it in the admin log."""
        name = " ".join((name or "").split())[:200]
        if not name:
            raise PlatformError("name_required", "请填写平台（机构）名称。", "give the platform's name")
        for value in (per_minute, per_day):
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_QUOTA:
                raise PlatformError("invalid_quota", f"配额须为 1 至 {MAX_QUOTA} 之间的整数。",
                                    f"quotas are whole numbers from 1 to {MAX_QUOTA}")
        if per_minute > per_day:
            raise PlatformError("invalid_quota", "每分钟配额不能大于每日配额。", "the per-minute quota exceeds the per-day quota")
        if days is not None and (not isinstance(days, int) or not 1 <= days <= 3650):
            raise PlatformError("invalid_days", "有效期须为 1 至 3650 天。", "the validity is 1 to 3650 days")
        cleaned = []
        for origin in origins:
            origin = origin.strip().rstrip("/")
            if not origin:
                continue
            if not origin.startswith(("https://", "http://")) or " " in origin or len(origin) > 200:
                raise PlatformError("invalid_origin", f"来源格式不正确：{origin[:60]}（应如 https://example.com）",
                                    f"not an origin: {origin[:60]} (like https://example.com)")
            cleaned.append(origin)
        plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions() as session:
            key = PlatformKey(name=name, key_hash=hash_key(plaintext), prefix=plaintext[:12], created_by=created_by,
                              created_at=now, expires_at=now + dt.timedelta(days=days) if days else None,
                              per_minute=per_minute, per_day=per_day, origins=cleaned)
            session.add(key)
            session.flush()
            self._record(session, created_by, "platform_issue", key, per_minute=per_minute, per_day=per_day,
                         expires_at=key.expires_at.isoformat() if key.expires_at else None, origins=cleaned)
            session.commit()
            return key, plaintext

    def revoke(self, key_id: int, *, actor: str | None = None) -> bool:
        """Revoke a key (sealed in the admin log as done by ``actor``); False when there is no such key."""
        with self._sessions() as session:
            done = session.execute(update(PlatformKey).where(PlatformKey.id == key_id, PlatformKey.revoked_at.is_(None))
                                   .values(revoked_at=self._clock())).rowcount
            key = session.get(PlatformKey, key_id)
            if done and key is not None:
                self._record(session, actor, "platform_revoke", key)
            session.commit()
            return key is not None

    def authenticate(self, plaintext: str) -> Platform | None:
        """The platform of a live key (not revoked, not expired), or None: one indexed statement
        (raises :class:`Unavailable` when the database is down)."""
        if not plaintext or not plaintext.startswith(KEY_PREFIX) or len(plaintext) > 200:
            return None
        rows = self._reads.fetch(self._by_hash, (hash_key(plaintext),))
        if not rows:
            return None
        key_id, name, per_minute, per_day, origins, revoked_at, expires_at = rows[0]
        if revoked_at is not None:
            return None
        expires_at = utc(expires_at)
        if expires_at is not None and expires_at <= self._clock():
            return None
        if isinstance(origins, str):  # SQLite keeps JSON as text
            origins = json.loads(origins)
        return Platform(key_id, name, per_minute, per_day, tuple(origins or ()))

    def close(self) -> None:
        """Give back this thread's read connection (at shutdown)."""
        self._reads.close()

    def origin_registered(self, origin: str) -> bool:
        """Whether some live key registered this browser origin (a CORS preflight carries no key)."""
        now = self._clock()
        with self._sessions() as session:
            rows = session.execute(select(PlatformKey.origins, PlatformKey.expires_at)
                                   .where(PlatformKey.revoked_at.is_(None))).all()
        return any(origin in (origins or ()) for origins, expires in rows if expires is None or expires > now)

    def list(self, *, days: int = 14) -> list[PlatformUse]:
        """Every key, newest first, with its items and not-found answers per day (UTC) over ``days``
        days, from the query log."""
        since = (self._clock() - dt.timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
        day = func.date(QueryLog.at)
        with self._sessions() as session:
            keys = list(session.scalars(select(PlatformKey).order_by(PlatformKey.id.desc())))
            rows = session.execute(
                select(QueryLog.platform_id, day, func.count(),
                       func.sum(case((QueryLog.status == "not_found", 1), else_=0)))
                .where(QueryLog.platform_id.is_not(None), QueryLog.at >= since)
                .group_by(QueryLog.platform_id, day)).all()
        per_key: dict[int, list[tuple[str, int, int]]] = {}
        for key_id, on, items, not_found in rows:
            per_key.setdefault(key_id, []).append((str(on), int(items), int(not_found or 0)))
        out = []
        for key in keys:
            used = sorted(per_key.get(key.id, []), reverse=True)
            out.append(PlatformUse(key, used, sum(u[1] for u in used), sum(u[2] for u in used)))
        return out

"""Per-institution API tokens: random, shown once, and only their SHA-256 is kept (a token is
high-entropy, so a fast hash is enough and lookups stay one index probe). Each token records the
account that created it (disabling that account revokes it, and a token of a disabled account
never answers) and expires (``API_TOKEN_DAYS``, default one year)."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.accounts import AccountError
from registry.accounts.models import Account, ApiToken
from registry.numbers.quarters import Clock, system_clock

TOKEN_PREFIX = "rnr_"
DEFAULT_DAYS = 365


@dataclass(frozen=True)
class TokenCheck:
    """``token`` when the text is a live token; else ``reason``: unknown | expired."""

    token: ApiToken | None
    reason: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    """Per-institution API tokens: create (plaintext returned once), list, revoke, authenticate."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock,
                 days: int = DEFAULT_DAYS) -> None:
        self._sessions = sessions
        self._clock = clock
        self.lifetime = dt.timedelta(days=days)

    def create(self, *, institution_id: int, name: str, created_by: str | None,
               account_id: int | None = None) -> tuple[ApiToken, str]:
        name = " ".join((name or "").split())[:100]
        if not name:
            raise AccountError("name_required", "请为令牌命名（如“LIMS 系统”）", "give the token a name (e.g. 'LIMS')")
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions() as session:
            token = ApiToken(institution_id=institution_id, name=name, token_hash=hash_token(plaintext),
                             prefix=plaintext[:12], created_by=created_by, account_id=account_id, created_at=now,
                             expires_at=now + self.lifetime)
            session.add(token)
            session.commit()
            return token, plaintext

    def list(self, institution_id: int) -> list[ApiToken]:
        with self._sessions() as session:
            return list(session.scalars(
                select(ApiToken).where(ApiToken.institution_id == institution_id).order_by(ApiToken.id.desc())))

    def revoke(self, *, institution_id: int, token_id: int) -> bool:
        """Revoke one of the institution's tokens; False when it has no such token."""
        with self._sessions() as session:
            token = session.get(ApiToken, token_id)
            if token is None or token.institution_id != institution_id:
                return False
            if token.revoked_at is None:
                token.revoked_at = self._clock()
                session.commit()
            return True

    def revoke_institution(self, institution_id: int) -> int:
        """Revoke every live token of an institution (when it is deactivated); how many."""
        with self._sessions() as session:
            done = session.execute(update(ApiToken).where(ApiToken.institution_id == institution_id,
                                                          ApiToken.revoked_at.is_(None))
                                   .values(revoked_at=self._clock())).rowcount
            session.commit()
            return done

    def authenticate(self, plaintext: str) -> ApiToken | None:
        """The live token with this text, or None (unknown, revoked, expired, or its account disabled)."""
        return self.check(plaintext).token

    def check(self, plaintext: str) -> TokenCheck:
        """Like :meth:`authenticate`, saying why a token is refused: ``expired`` for a token past
        its expiry, ``unknown`` for everything else (one indexed lookup)."""
        if not plaintext or not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
            return TokenCheck(None, "unknown")
        with self._sessions() as session:
            row = session.execute(select(ApiToken, Account.active).outerjoin(Account, Account.id == ApiToken.account_id)
                                  .where(ApiToken.token_hash == hash_token(plaintext))).first()
            if row is None:
                return TokenCheck(None, "unknown")
            token, account_active = row
            if token.revoked_at is not None or account_active is False:
                return TokenCheck(None, "unknown")
            now = self._clock()
            if token.expires_at is not None and token.expires_at <= now:
                return TokenCheck(None, "expired")
            if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
                token.last_used_at = now  # at most one write a minute per token
                session.commit()
            return TokenCheck(token)

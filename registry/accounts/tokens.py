"""Per-institution API tokens: random, shown once, and only their SHA-256 is kept (a token is
high-entropy, so a fast hash is enough and lookups stay one index probe)."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.accounts import AccountError
from registry.accounts.models import ApiToken
from registry.numbers.quarters import Clock, system_clock

TOKEN_PREFIX = "rnr_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenService:
    """Per-institution API tokens: create (plaintext returned once), list, revoke, authenticate."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def create(self, *, institution_id: int, name: str, created_by: str | None) -> tuple[ApiToken, str]:
        name = " ".join((name or "").split())[:100]
        if not name:
            raise AccountError("name_required", "请为令牌命名（如“LIMS 系统”）", "give the token a name (e.g. 'LIMS')")
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._sessions() as session:
            token = ApiToken(institution_id=institution_id, name=name, token_hash=hash_token(plaintext),
                             prefix=plaintext[:12], created_by=created_by, created_at=self._clock())
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

    def authenticate(self, plaintext: str) -> ApiToken | None:
        """The live token with this text, or None (unknown or revoked)."""
        if not plaintext or not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
            return None
        with self._sessions() as session:
            token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(plaintext)))
            if token is None or token.revoked_at is not None:
                return None
            now = self._clock()
            if token.last_used_at is None or now - token.last_used_at > dt.timedelta(minutes=1):
                token.last_used_at = now  # at most one write a minute per token
                session.commit()
            return token

"""Idempotency-Key replay for the upload API's continuous registration."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from registry.accounts.models import IdempotentResponse
from registry.numbers.quarters import Clock, system_clock


class IdempotencyStore:
    """Idempotency-Key → the response first given; a retry with another body is refused."""

    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock = system_clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def find(self, *, token_id: int, key: str) -> IdempotentResponse | None:
        with self._sessions() as session:
            return session.scalar(select(IdempotentResponse).where(
                IdempotentResponse.token_id == token_id, IdempotentResponse.key == key))

    def save(self, *, token_id: int, key: str, request_sha256: str, status: int, body: dict) -> IdempotentResponse:
        """Keep the response; when a concurrent call with the same key won, return its response."""
        with self._sessions() as session:
            stored = IdempotentResponse(token_id=token_id, key=key, request_sha256=request_sha256, status=status,
                                        body=body, created_at=self._clock())
            session.add(stored)
            try:
                session.commit()
                return stored
            except IntegrityError:
                session.rollback()
        return self.find(token_id=token_id, key=key)

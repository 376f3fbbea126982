"""The e-mail outbox and each account's choices of which messages it receives."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from registry.infra.base import Base, BigId, UTCDateTime, utcnow


class OutboxMessage(Base):
    """One e-mail, rendered when it arose (both languages, plain text and HTML).

    A message carrying a secret (a tracking code, a reset or verification link) or a
    complainant's address keeps its bodies and its recipient only in ``sealed`` (encrypted,
    registry/infra/sealing.py; ``recipient`` then holds the address masked) and loses them once
    sent. ``status``:
    pending → sending (claimed by one sender with a guarded UPDATE) → sent | failed; a failure
    goes back to pending with ``next_attempt_at`` pushed back (exponential backoff)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(300))
    body_text: Mapped[str | None] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    sealed: Mapped[str | None] = mapped_column(Text)
    secret: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(12), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(200))
    # what the message is about (e.g. ``batch:17:4``): a message with the same key is never queued twice
    dedupe: Mapped[str | None] = mapped_column(String(120), unique=True)


class NotificationChoice(Base):
    """An account's choice for one kind of message (no row: the kind's default, on)."""

    __tablename__ = "notification_choices"
    __table_args__ = (UniqueConstraint("account_id", "kind", name="uq_notification_choices_account_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    enabled: Mapped[bool] = mapped_column(Boolean)

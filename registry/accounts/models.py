"""Accounts, API tokens and stored idempotent responses."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from registry.infra.base import Base, BigId, UTCDateTime, utcnow
from registry.institutions.models import Authority, Institution


class Account(Base):
    """A person who signs in: an institution user (bound to an institution), a regulator user
    (bound to an authority) or an admin. Passwords are stored as werkzeug scrypt hashes."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # institution | regulator | admin
    institution_id: Mapped[int | None] = mapped_column(ForeignKey("institutions.id"), index=True)
    authority_id: Mapped[int | None] = mapped_column(ForeignKey("authorities.id"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    failed_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # the owner's address, usable for resets and notices only once verified by link
    email: Mapped[str | None] = mapped_column(String(254))
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # TOTP (RFC 6238): the shared secret encrypted with the settings' key (registry/infra/sealing.py);
    # enabled once the owner confirmed a code; the last accepted time step (no code used twice)
    totp_secret: Mapped[str | None] = mapped_column(String(300))
    totp_enabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigId)

    @property
    def verified_email(self) -> str | None:
        return self.email if self.email and self.email_verified_at is not None else None

    @property
    def has_2fa(self) -> bool:
        return self.totp_enabled_at is not None

    institution: Mapped[Institution | None] = relationship(lazy="joined")
    authority: Mapped[Authority | None] = relationship(lazy="joined")


class ApiToken(Base):
    """A lab system's credential for the upload API; only the SHA-256 of the token is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    created_by: Mapped[str | None] = mapped_column(String(100))
    # the account that created it: disabling that account revokes the token
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class IdempotentResponse(Base):
    """The stored answer to an API call made with an ``Idempotency-Key``: a retry gets it again."""

    __tablename__ = "idempotent_responses"
    __table_args__ = (UniqueConstraint("token_id", "key", name="uq_idempotent_responses_token_key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    key: Mapped[str] = mapped_column(String(200))
    request_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginSession(Base):
    """One signed-in browser. The cookie carries a random id; only its SHA-256 is kept here, so
    signing out (or disabling the account, or changing its password) ends the session on the
    server even for a copied cookie."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str | None] = mapped_column(String(120))


class LoginThrottle(Base):
    """Failed sign-ins per (username, client address), kept as a SHA-256 of the pair: each
    failure beyond a few makes that pair wait exponentially longer. No account is ever locked
    for everyone, and unknown usernames are counted the same way as real ones."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class PasswordReset(Base):
    """A password reset, started by an admin (``created_by``) or by the owner (``by_owner``): a
    single-use, expiring link (only its SHA-256 kept) sent to the owner's verified address, with
    which the owner sets a new password; ``notified_at`` is when the owner was told who reset it."""

    __tablename__ = "password_resets"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    notified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    by_owner: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class RecoveryCode(Base):
    """A single-use recovery code for a two-factor account (only its SHA-256 kept)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class EmailVerification(Base):
    """A link that proves the owner reads ``email`` (only its SHA-256 kept; single use, expiring)."""

    __tablename__ = "email_verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class SealedEntry:
    """The sealed columns of an entry of the admin log or of a sibling log built the same way
    (registry/accounts/adminlog.py): each model adds its own ``id`` and ``seq``."""

    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text)
    mac: Mapped[str] = mapped_column(String(64))
    # the id of the audit key whose admin-log subkey sealed it (AUDIT_KEYS); NULL for entries sealed
    # before migration 0010, which verify against every configured key
    key_id: Mapped[str | None] = mapped_column(String(32))


class AdminLogEntry(SealedEntry, Base):
    """One admin action (account created, disabled, enabled, reset, role changed; holiday added
    or deleted), sealed into its own HMAC chain (registry/accounts/adminlog.py)."""

    __tablename__ = "admin_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)


class AccountRequest(Base):
    """An institution's request for a portal account (onboarding): its USCC, a CMA certificate
    on record for it, a username and an address. ``status``: unverified (the address not yet
    proved by its link) → pending (in the reviewing authority's console) → approved | refused
    (with the officer and a reason, sealed in the admin log)."""

    __tablename__ = "account_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    institution_id: Mapped[int] = mapped_column(ForeignKey("institutions.id"), index=True)
    certificate_number: Mapped[str] = mapped_column(String(12))
    username: Mapped[str] = mapped_column(String(64))
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(12), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))

    institution: Mapped[Institution] = relationship(lazy="joined")

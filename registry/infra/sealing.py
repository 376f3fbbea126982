"""Encryption of the few secrets the registry must keep readable for a while: an outbox message
that carries a tracking code or a link until it is sent, an account's TOTP secret.

Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under ``ENCRYPTION_KEYS``: Fernet
keys, newest first, comma-separated (new values are sealed with the first; any of them opens).
Unset, one key is derived from ``SECRET_KEY`` (so the embedded default works), with the same
caveat as the audit chain: rotating SECRET_KEY then makes the sealed values unreadable.
"""
from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SealError(ValueError):
    """A sealed value that none of the configured keys opens (altered, or its key removed)."""


def derived_key(secret_key: str) -> bytes:
    digest = hmac.new(secret_key.encode(), b"rnr-encryption:v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest)


def parse_keys(value: str) -> list[bytes]:
    """``ENCRYPTION_KEYS`` checked: each a Fernet key (``Fernet.generate_key()``)."""
    keys = [k.strip().encode() for k in (value or "").split(",") if k.strip()]
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            raise ValueError("ENCRYPTION_KEYS: each key must be 32 url-safe base64-encoded bytes "
                             "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
                             ) from None
    return keys


class Sealer:
    def __init__(self, *, keys: str = "", secret_key: str = "") -> None:
        ring = parse_keys(keys) or [derived_key(secret_key)]
        self._fernet = MultiFernet([Fernet(k) for k in ring])

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SealError("a sealed value could not be opened with ENCRYPTION_KEYS") from None

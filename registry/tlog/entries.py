"""The log's entries: salted commitments, never the (institution, number) pair itself.

entry = UTF-8 JSON, keys sorted, no spaces:
    {"action": "register"|"withdraw"|"restore", "at": "<ISO 8601, seconds, +08:00>",
     "batch": <batch id>, "commitment": "<64 hex>", "quarter": "<YYYYQn>"}
commitment = SHA-256(USCC ‖ 0x0A ‖ number ‖ 0x0A ‖ document SHA-256 hex or "" ‖ 0x0A ‖ salt)
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json

from registry.numbers.quarters import iso_local

ACTIONS = ("register", "withdraw", "restore")
SALT_BYTES = 16


def commitment(uscc: str, number: str, salt: bytes, document_sha256: str | None = None) -> bytes:
    text = f"{uscc}\n{number}\n{document_sha256 or ''}\n".encode()
    return hashlib.sha256(text + salt).digest()


def entry_text(*, action: str, at: dt.datetime, batch: int, commitment: bytes, quarter: str) -> str:
    return json.dumps({"action": action, "at": iso_local(at), "batch": batch, "commitment": commitment.hex(),
                       "quarter": quarter}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_at_cache: dict[dt.datetime, str] = {}


def fast_entry_text(*, action: str, at: dt.datetime, batch: int, commitment: bytes, quarter: str) -> str:
    """:func:`entry_text` written out: the same bytes (action, time and quarter hold nothing JSON
    escapes), without ``json.dumps`` per entry — a batch of a million shares one time."""
    stamp = _at_cache.get(at)
    if stamp is None:
        if len(_at_cache) > 10_000:
            _at_cache.clear()
        stamp = _at_cache[at] = iso_local(at)
    return (f'{{"action":"{action}","at":"{stamp}","batch":{int(batch)},'
            f'"commitment":"{commitment.hex()}","quarter":"{quarter}"}}')

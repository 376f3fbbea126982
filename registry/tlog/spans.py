"""Pending spans: a registration chunk's log entries waiting in one ``tlog_pending`` row.

A span holds ``count`` register entries of one batch (same action, institution, batch, quarter
and time), in the order they will be appended: ``numbers`` newline-joined (normalised numbers
never contain a newline), ``salts`` 16 bytes per number concatenated, ``sha256s`` the document
fingerprints newline-joined with an empty line for a number without one, NULL when none of the
span has one. Written by the loaders (registry/registration/loaders.py), expanded by the
integrator (registry/tlog/service.py).
"""
from __future__ import annotations

from typing import Sequence

from .entries import SALT_BYTES

#: the packed columns, in the order :func:`pack` returns them
PACKED_COLUMNS = "count, numbers, salts, sha256s"


def pack(numbers: Sequence[str], salts: bytes, digests: Sequence[str | None] | None = None
         ) -> tuple[int, str, bytes, str | None]:
    """(count, numbers, salts, sha256s) of a span of ``numbers`` with their ``salts`` (16 bytes
    each, in the same order) and document fingerprints (``digests``, the same order; None when
    the chunk carries none)."""
    if len(salts) != SALT_BYTES * len(numbers):
        raise ValueError("a span needs 16 bytes of salt per number")
    sha256s = None
    if digests is not None and any(digests):
        sha256s = "\n".join([digest or "" for digest in digests])
    return len(numbers), "\n".join(numbers), salts, sha256s


def unpack(count: int, numbers: str, salts: bytes, sha256s: str | None) -> list[tuple[str, bytes, str | None]]:
    """A span's entries in order: (number, salt, document fingerprint or None)."""
    names = numbers.split("\n")
    salts = bytes(salts)
    if len(names) != count or len(salts) != SALT_BYTES * count:
        raise ValueError(f"a pending span does not hold the {count} entries it says")
    cut = [salts[i:i + SALT_BYTES] for i in range(0, len(salts), SALT_BYTES)]
    if sha256s is None:
        return [(name, salt, None) for name, salt in zip(names, cut)]
    digests = sha256s.split("\n")
    if len(digests) != count:
        raise ValueError(f"a pending span does not hold the {count} fingerprints it says")
    return [(name, salt, digest or None) for name, salt, digest in zip(names, cut, digests)]

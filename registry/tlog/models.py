"""The transparency log's tables.

``tlog_pending``: entries written in the transaction of the change they record, waiting for the
integrator: a registration's chunk of up to 10,000 numbers as one row (a span: ``count`` entries
packed in ``numbers``, ``salts`` and ``sha256s``), a withdrawal or a restore as one row of its own
(``number``, ``salt``, ``sha256``; ``count`` 1), as was every registration written before 0020. ``tlog_entries``: the integrated
entries by leaf index, with the private side of each commitment (number, institution, salt) that
only its institution and the verify answer with ``proof=1`` reveal. ``tlog_tiles``: the tree's
hashes in tiles of 256 (C2SP tlog-tiles: level 0 holds leaf hashes, level L the roots of subtrees
of 256^L leaves), 8 KiB a full tile. ``tlog_checkpoints``: every signed tree head. ``tlog_keys``:
the verifier keys that signed them (public; the signing key is never stored).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from registry.infra.base import Base, BigId, UTCDateTime


class PendingEntry(Base):
    """One pending row: a single entry (``number``, ``salt``, ``sha256``), or a span of
    ``count`` register entries of one batch in the order they are appended: ``numbers`` newline-
    joined, ``salts`` 16 bytes each concatenated, ``sha256s`` newline-joined with an empty line
    for a number without a document fingerprint (NULL when none of the span has one)."""
    __tablename__ = "tlog_pending"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    action: Mapped[str] = mapped_column(String(8))
    number: Mapped[str | None] = mapped_column(String(64))
    institution_id: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    quarter: Mapped[str] = mapped_column(String(6))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    salt: Mapped[bytes | None] = mapped_column(LargeBinary(16))
    sha256: Mapped[str | None] = mapped_column(String(64))  # the registration's document fingerprint
    count: Mapped[int] = mapped_column(Integer, server_default=text("1"), default=1)
    numbers: Mapped[str | None] = mapped_column(Text)
    salts: Mapped[bytes | None] = mapped_column(LargeBinary)
    sha256s: Mapped[str | None] = mapped_column(Text)


class LogEntry(Base):
    __tablename__ = "tlog_entries"
    __table_args__ = (
        Index("ix_tlog_entries_number_institution", "number", "institution_id"),
        Index("ix_tlog_entries_institution_leaf", "institution_id", "leaf_index"),
    )

    leaf_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    action: Mapped[str] = mapped_column(String(8))
    number: Mapped[str] = mapped_column(String(64))
    institution_id: Mapped[int] = mapped_column(Integer)
    batch_id: Mapped[int] = mapped_column(BigInteger)
    quarter: Mapped[str] = mapped_column(String(6))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    salt: Mapped[bytes] = mapped_column(LargeBinary(16))
    commitment: Mapped[bytes] = mapped_column(LargeBinary(32))


class Tile(Base):
    __tablename__ = "tlog_tiles"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hashes: Mapped[bytes] = mapped_column(LargeBinary)


class StoredCheckpoint(Base):
    __tablename__ = "tlog_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class VerifierKey(Base):
    __tablename__ = "tlog_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(300), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

"""The tree's hashes in tiles (C2SP tlog-tiles layout): tile (L, N) holds the level-L hashes
256·N … 256·N+255, 32 bytes each, concatenated; level-L hash k is the root of leaves
[k·256^L, (k+1)·256^L). Only the right edge's tiles are partial. About 32.1 bytes a leaf.
"""
from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from .merkle import perfect_root
from .models import Tile

WIDTH = 256
HASH = 32
TILE_BYTES = WIDTH * HASH


class TileReader:
    """Subtree hashes read from stored tiles (each tile read once per reader): the
    :class:`~registry.tlog.merkle.HashSource` of the proofs."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._cache: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self._cache:
            self._cache[key] = self._session.scalar(
                select(Tile.hashes).where(Tile.level == level, Tile.index == index)) or b""
        return self._cache[key]

    def keep(self, level: int, index: int, hashes: bytes) -> None:
        """Remember a tile this transaction has just written."""
        self._cache[(level, index)] = hashes

    def hashes(self, level: int, start: int, count: int) -> list[bytes]:
        """``count`` level-``level`` hashes from ``start``, all within one tile."""
        tile = self.tile(level, start // WIDTH)
        offset = (start % WIDTH) * HASH
        raw = tile[offset:offset + count * HASH]
        if len(raw) != count * HASH:
            raise LookupError(f"tile ({level}, {start // WIDTH}) lacks hashes {start}…{start + count - 1}")
        return [raw[i:i + HASH] for i in range(0, len(raw), HASH)]

    def subtree(self, start: int, size: int) -> bytes:
        height = size.bit_length() - 1
        level, rest = divmod(height, 8)
        return perfect_root(self.hashes(level, start >> (8 * level), 1 << rest))


def append_hashes(session: Session, reader: TileReader, level: int, first: int, hashes: list[bytes]) -> None:
    """Store level-``level`` hashes ``first``…, then the parents of the tiles they complete, up
    the levels. Only the tile holding ``first`` may exist already (the partial right edge)."""
    while hashes:
        number, offset = divmod(first, WIDTH)
        existing = reader.tile(level, number) if offset else b""
        if len(existing) != offset * HASH:
            raise LookupError(f"tile ({level}, {number}) holds {len(existing) // HASH} hashes, expected {offset}")
        buf = existing + b"".join(hashes)
        if offset:
            session.execute(delete(Tile).where(Tile.level == level, Tile.index == number))
        rows, parents = [], []
        for i in range(0, len(buf), TILE_BYTES):
            chunk = buf[i:i + TILE_BYTES]
            rows.append({"level": level, "index": number + i // TILE_BYTES, "hashes": chunk})
            reader.keep(level, number + i // TILE_BYTES, chunk)
            if len(chunk) == TILE_BYTES:
                parents.append(perfect_root([chunk[j:j + HASH] for j in range(0, TILE_BYTES, HASH)]))
        session.connection().execute(insert(Tile.__table__), rows)
        level, first, hashes = level + 1, number, parents

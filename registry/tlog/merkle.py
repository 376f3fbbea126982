"""RFC 9162 §2.1 Merkle tree hashing, inclusion and consistency proofs over stored hashes.

Proofs are computed from a :class:`HashSource` that answers the hash of any aligned complete
subtree (the tiles of :mod:`registry.tlog.tiles` answer it with one or two tile reads), so a proof
costs O(log n) subtree hashes whatever the log's size.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Protocol

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def perfect_root(hashes: list[bytes]) -> bytes:
    """The root of a complete subtree whose 2^k bottom hashes are given in order."""
    level = hashes
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class HashSource(Protocol):
    def subtree(self, start: int, size: int) -> bytes:
        """The hash of the complete subtree of ``size`` (a power of two) leaves from ``start``
        (a multiple of ``size``)."""


class Tree:
    """The tree heads and proofs of RFC 9162 §2.1 over a :class:`HashSource`."""

    def __init__(self, source: HashSource) -> None:
        self.source = source

    def root(self, size: int) -> bytes:
        return self._mth(0, size) if size else EMPTY_ROOT

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self.source.subtree(lo, n)
        k = split_point(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def inclusion(self, index: int, size: int) -> list[bytes]:
        """PATH(index, D[0:size]), leaf-side first (RFC 9162 §2.1.3.1)."""
        if not 0 <= index < size:
            raise ValueError("index outside the tree")
        path: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = split_point(hi - lo)
            if index < lo + k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo = lo + k
        return path[::-1]

    def consistency(self, old: int, new: int) -> list[bytes]:
        """PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1); empty when old == new."""
        if not 0 < old <= new:
            raise ValueError("sizes out of order")
        proof: list[bytes] = []
        lo, hi, m, complete = 0, new, old, True
        while True:
            n = hi - lo
            if m == n:
                if not complete:
                    proof.append(self._mth(lo, hi))
                break
            k = split_point(n)
            if m <= k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        return proof[::-1]


class CompactRange:
    """The right edge of a growing tree: O(log n) perfect-subtree hashes, enough to append leaves
    one by one and to give the root at any size reached (used to re-check a log from its entries)."""

    def __init__(self) -> None:
        self.size = 0
        self._stack: list[tuple[int, bytes]] = []  # (subtree size, hash), sizes decreasing

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; returns the complete subtrees it finished, as (start, size, hash)."""
        finished = []
        size, node = 1, leaf
        start = self.size
        while self._stack and self._stack[-1][0] == size:
            _, left = self._stack.pop()
            node = node_hash(left, node)
            size *= 2
            start -= size // 2
            finished.append((start, size, node))
        self._stack.append((size, node))
        self.size += 1
        return finished

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        node = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            node = node_hash(left, node)
        return node

"""Shard layout: sizes, bit offsets and the on-store format shared by the local and Redis stores.

A shard is a 64-byte header followed by the filter's bits, most-significant bit first within a
byte (Redis bit order), so a shard file and a Redis string are byte-identical. Sizes and bit
offsets come from pybloom-live (``make_hashfuncs`` and ``BloomFilter``'s formulas); the shard of a
number comes from CRC-32, which pybloom does not use.
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass, field

from bitarray import bitarray
from pybloom_live import BloomFilter
from pybloom_live.pybloom import make_hashfuncs

HEADER_SIZE = 64
HEADER_BITS = HEADER_SIZE * 8
MAGIC = b"RNRBLOOM"
FORMAT_VERSION = 1
#: generation (u64, non-zero) first so `BITFIELD_RO key GET i64 0` reads it; then the layout.
_HEADER = struct.Struct(">Q8sHHIIIQQd")
#: Redis strings hold at most 2**32 bits.
MAX_SHARD_BITS = 2**32 - HEADER_BITS
#: auto-sized shards aim at 8–64 MiB each.
TARGET_SHARD_BYTES = 64 * 1024 * 1024

_REVERSE = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


class HeaderError(ValueError):
    """A shard's header is missing, zero or not ours."""


def filter_size(capacity: int, error_rate: float) -> tuple[int, int]:
    """``(num_slices, bits_per_slice)`` exactly as ``pybloom_live.BloomFilter`` computes them."""
    num_slices = int(math.ceil(math.log(1.0 / error_rate, 2)))
    bits_per_slice = int(math.ceil((capacity * abs(math.log(error_rate))) / (num_slices * (math.log(2) ** 2))))
    return num_slices, bits_per_slice


def choose_shards(capacity: int, error_rate: float, shards: int = 0) -> int:
    """Shard count for ``capacity``: ``shards`` if given (raised if a shard would pass 2**32 bits),
    else enough for each shard to stay at or under 64 MiB (at least one)."""
    num_slices, bits_per_slice = filter_size(capacity, error_rate)
    total_bits = num_slices * bits_per_slice
    needed = max(1, math.ceil(total_bits / (MAX_SHARD_BITS * 0.99)))
    if shards > 0:
        return max(shards, needed)
    return max(needed, math.ceil(total_bits / 8 / TARGET_SHARD_BYTES))


def _offsets_function(num_slices: int, bits_per_slice: int):
    """``key bytes -> [slice × bits_per_slice + hash]`` with pybloom-live's hashes.

    pybloom's hash function is a generator yielding one value at a time; importing 亿 numbers
    calls it for every one. This takes the same salts and digest format from pybloom's own
    function (its closure) and computes the values in one go; a test holds the two equal. If a
    pybloom release renames those, pybloom's generator is used as it is.
    """
    hash_maker = make_hashfuncs(num_slices, bits_per_slice)[0]
    bases = [i * bits_per_slice for i in range(num_slices)]
    cells = dict(zip(hash_maker.__code__.co_freevars, (c.cell_contents for c in hash_maker.__closure__ or ())))
    if not {"salts", "fmt"} <= cells.keys():
        return lambda key: [b + h for b, h in zip(bases, hash_maker(key))]
    salts, unpack = cells["salts"], struct.Struct(cells["fmt"]).unpack

    def offsets(key: bytes) -> list[int]:
        values: list[int] = []
        for salt in salts:
            h = salt.copy()
            h.update(key)
            values += unpack(h.digest())
        return [b + v % bits_per_slice for b, v in zip(bases, values)]

    return offsets


def _seeded_hash(salts) -> tuple | None:
    """pybloom's salt ``i`` is its hash function fed ``H(pack("I", i))``, so a key's digest
    ``salt.copy().update(key)`` equals ``H(seed + key)``: one call instead of three (0.51 against
    0.61 µs a key). (hash function, seeds) when that holds for these salts — checked here, on a
    probe key — else None (the salts are then used as they are)."""
    name = getattr(salts[0], "name", None)
    hashfn = getattr(hashlib, name, None) if isinstance(name, str) else None
    if hashfn is None:
        return None
    seeds = [hashfn(struct.pack("I", i)).digest() for i in range(len(salts))]
    for seed, salt in zip(seeds, salts):
        probe = salt.copy()
        probe.update(b"registry probe")
        if probe.digest() != hashfn(seed + b"registry probe").digest():
            return None
    return hashfn, seeds


def _many_offsets_function(num_slices: int, bits_per_slice: int):
    """``keys -> (n × num_slices) uint64 array`` of the same offsets as :func:`_offsets_function`,
    for a batch: the digests are taken one key at a time (hashlib), then unpacked and reduced in
    one go with numpy instead of once per key in Python. None when pybloom's closure is not the
    expected one (the per-key function is used then)."""
    hash_maker = make_hashfuncs(num_slices, bits_per_slice)[0]
    cells = dict(zip(hash_maker.__code__.co_freevars, (c.cell_contents for c in hash_maker.__closure__ or ())))
    if not {"salts", "fmt"} <= cells.keys() or len(set(cells["fmt"])) != 1 or cells["fmt"][0] not in "HIQ":
        return None
    import numpy as np

    salts, fmt = cells["salts"], cells["fmt"]
    dtype = np.dtype({"H": "=u2", "I": "=u4", "Q": "=u8"}[fmt[0]])  # struct's native order, as pybloom unpacks
    per_key = len(fmt) * len(salts)
    bases = np.arange(num_slices, dtype=np.uint64) * np.uint64(bits_per_slice)
    modulus = np.uint64(bits_per_slice)

    seeded = _seeded_hash(salts)

    def many(keys: list[bytes]):
        if seeded is not None:
            hashfn, seeds = seeded
            digests = [hashfn(seed + key).digest() for key in keys for seed in seeds]
        elif len(salts) == 1:
            salt = salts[0]
            digests = []
            append = digests.append
            for key in keys:
                h = salt.copy()
                h.update(key)
                append(h.digest())
        else:
            digests = []
            for key in keys:
                for salt in salts:
                    h = salt.copy()
                    h.update(key)
                    digests.append(h.digest())
        values = np.frombuffer(b"".join(digests), dtype=dtype).reshape(len(keys), per_key)[:, :num_slices]
        return values.astype(np.uint64) % modulus + bases

    return many


@dataclass(frozen=True)
class Layout:
    """The shape of one generation: shard count and each shard's pybloom-live sizing."""

    shards: int
    capacity: int  # total, across shards
    error_rate: float
    num_slices: int
    bits_per_slice: int
    _hashes: object = field(default=None, repr=False, compare=False, hash=False)
    _many: list = field(default_factory=list, repr=False, compare=False, hash=False)  # built on first use

    @classmethod
    def for_capacity(cls, capacity: int, error_rate: float = 0.001, shards: int = 0) -> "Layout":
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        if not 0 < error_rate < 1:
            raise ValueError("error_rate must be between 0 and 1")
        shards = choose_shards(capacity, error_rate, shards)
        num_slices, bits_per_slice = filter_size(math.ceil(capacity / shards), error_rate)
        return cls(shards, capacity, error_rate, num_slices, bits_per_slice)

    def __post_init__(self):
        if self.num_bits > MAX_SHARD_BITS:
            raise ValueError(f"a shard of {self.num_bits} bits exceeds Redis's 2**32-bit strings; use more shards")
        object.__setattr__(self, "_hashes", _offsets_function(self.num_slices, self.bits_per_slice))

    @property
    def shard_capacity(self) -> int:
        return math.ceil(self.capacity / self.shards)

    @property
    def num_bits(self) -> int:
        return self.num_slices * self.bits_per_slice

    @property
    def bits_bytes(self) -> int:
        return (self.num_bits + 7) // 8

    @property
    def shard_bytes(self) -> int:
        return HEADER_SIZE + self.bits_bytes

    def shard_of(self, number: str) -> int:
        return zlib.crc32(number.encode("utf-8")) % self.shards

    def offsets(self, number: str) -> tuple[int, list[int]]:
        """``(shard, bit offsets within the shard's filter)`` — pybloom's slice × bits_per_slice + hash."""
        key = number.encode("utf-8")
        return zlib.crc32(key) % self.shards, self._hashes(key)

    def offsets_many(self, numbers: list[str]):
        """``(shards, offsets)`` of many numbers as numpy arrays — shard per number (``int64``)
        and its ``num_slices`` bit offsets (``n × num_slices``, ``uint64``) — equal to
        :meth:`offsets` number by number (a test holds them equal), in a fraction of the time."""
        import numpy as np

        if not self._many:
            self._many.append(_many_offsets_function(self.num_slices, self.bits_per_slice))
        many = self._many[0]
        keys = [number.encode("utf-8") for number in numbers]
        if self.shards == 1:
            shards = np.zeros(len(keys), dtype=np.int64)
        else:
            crc32 = zlib.crc32
            shards = np.fromiter((crc32(key) for key in keys), dtype=np.int64, count=len(keys)) % self.shards
        if many is None:
            offsets = np.array([self._hashes(key) for key in keys], dtype=np.uint64).reshape(len(keys), self.num_slices)
        else:
            offsets = many(keys)
        return shards, offsets

    def header(self, generation: int, shard: int) -> bytes:
        if generation <= 0:
            raise ValueError("generation must be positive")
        raw = _HEADER.pack(
            generation, MAGIC, FORMAT_VERSION, 0, shard, self.shards,
            self.num_slices, self.bits_per_slice, self.shard_capacity, self.error_rate,
        )
        return raw.ljust(HEADER_SIZE, b"\0")

    def to_dict(self) -> dict:
        return {
            "shards": self.shards, "capacity": self.capacity, "error_rate": self.error_rate,
            "num_slices": self.num_slices, "bits_per_slice": self.bits_per_slice,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Layout":
        return cls(int(d["shards"]), int(d["capacity"]), float(d["error_rate"]), int(d["num_slices"]), int(d["bits_per_slice"]))


@dataclass(frozen=True)
class Pointer:
    """A generation and its layout: the content of `current.json` / `rnr:bloom:current` and of the
    rebuild announcement."""

    generation: int
    layout: Layout

    def dumps(self) -> str:
        return json.dumps({"generation": self.generation, "layout": self.layout.to_dict()}, sort_keys=True)

    @classmethod
    def loads(cls, raw: str | bytes) -> "Pointer":
        d = json.loads(raw)
        return cls(int(d["generation"]), Layout.from_dict(d["layout"]))


@dataclass(frozen=True)
class ShardHeader:
    generation: int
    shard: int
    shards: int
    num_slices: int
    bits_per_slice: int
    capacity: int
    error_rate: float


def parse_header(raw: bytes) -> ShardHeader:
    """Decode a shard header; raise `HeaderError` when it is short, zero or has the wrong magic."""
    if len(raw) < _HEADER.size:
        raise HeaderError("short header")
    gen, magic, version, _, shard, shards, ns, bps, cap, rate = _HEADER.unpack_from(raw)
    if gen == 0 or magic != MAGIC or version != FORMAT_VERSION:
        raise HeaderError(f"not a shard header (generation {gen}, magic {magic!r})")
    return ShardHeader(gen, shard, shards, ns, bps, cap, rate)


def generation_of(raw: bytes) -> int:
    """The generation in a header, 0 when it is missing or not ours."""
    try:
        return parse_header(raw).generation
    except HeaderError:
        return 0


def bits_from_bloomfilter(bf: BloomFilter) -> bytes:
    """A pybloom ``BloomFilter``'s bits (little-endian bitarray) in store order (MSB first)."""
    return bf.bitarray.tobytes().translate(_REVERSE)


def bloomfilter_from_bits(layout: Layout, bits: bytes) -> BloomFilter:
    """A pybloom ``BloomFilter`` holding ``bits`` (store order, header stripped) for one shard of ``layout``."""
    bf = BloomFilter(layout.shard_capacity, layout.error_rate)
    if (bf.num_slices, bf.bits_per_slice) != (layout.num_slices, layout.bits_per_slice):
        raise ValueError("layout does not match pybloom-live's sizing")
    ba = bitarray(endian="little")
    ba.frombytes(bytes(bits[: layout.bits_bytes]).translate(_REVERSE))
    del ba[layout.num_bits:]
    bf.bitarray = ba
    return bf

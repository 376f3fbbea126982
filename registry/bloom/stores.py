"""The two shard stores behind one small interface: files on this host, or strings in Redis.

Both hold the same bytes per shard (header + bits, MSB first), a pointer to the current
generation, a rebuild announcement, and a newest-batch marker per generation.
"""
from __future__ import annotations

import fcntl
import json
import mmap
import os
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

from bitarray import bitarray
from redis.exceptions import ResponseError

from registry.infra.redisdirect import DirectRedis, Packed, checked
from registry.bloom.layout import HEADER_BITS, HEADER_SIZE, HeaderError, Pointer, generation_of, parse_header


class StaleShard(Exception):
    """A shard's header does not carry the expected generation (0 when missing or not ours)."""

    def __init__(self, generation: int):
        super().__init__(generation)
        self.generation = generation


class RebuildInProgress(RuntimeError):
    """Another process holds the rebuild lock."""


#: offsets :func:`set_bits` takes at a time: its temporaries (~17 bytes an offset) stay under 5 MiB
SET_BITS_SLICE = 1 << 18


def set_bits(bitmap, offsets) -> None:
    """Set bit ``o`` (most significant first within a byte, as Redis) of ``bitmap`` (a numpy
    ``uint8`` array) for each offset of ``offsets`` (a numpy array), with one unbuffered OR per
    offset (``np.bitwise_or.at``: repeated bytes are ORed, not overwritten) — 0.19 µs a number of
    10 offsets, against 0.33 µs for sorting them first. :data:`SET_BITS_SLICE` offsets at a time,
    so that a shard's millions of offsets do not cost their temporaries at once."""
    import numpy as np

    for start in range(0, len(offsets), SET_BITS_SLICE):
        part = offsets[start:start + SET_BITS_SLICE].astype(np.uint64, copy=False)
        np.bitwise_or.at(bitmap, (part >> np.uint64(3)).astype(np.intp),
                         np.uint8(0x80) >> (part & np.uint64(7)).astype(np.uint8))


class ShardStore(Protocol):
    kind: str

    def read_pointer(self) -> Pointer | None: ...
    def read_announcement(self) -> Pointer | None: ...
    def read_marker(self, generation: int) -> int | None: ...
    def advance_marker(self, generation: int, batch_id: int) -> None: ...
    def header_generations(self, pointer: Pointer) -> list[int]: ...
    def run_id(self) -> str | None: ...
    def record_checked(self, generation: int, run_id: str, marker: int) -> None: ...
    def lost_writes_since_check(self, generation: int, marker: int) -> str | None: ...
    def probe(self, generation: int, shard: int, offsets: list[int]) -> bool: ...
    def probe_many(self, generation: int, items: list[tuple[int, list[int]]]) -> list[bool]: ...
    def write_bits(self, pointer: Pointer, by_shard: dict, *, building: bool, sync: bool = True) -> bool: ...
    def merge_bits(self, pointer: Pointer, shard: int, bits, *, building: bool, sync: bool = True) -> bool: ...
    def merge_offsets(self, pointer: Pointer, shard: int, offsets, *, building: bool, sync: bool = True) -> bool: ...
    def sync(self, pointer: Pointer) -> None: ...
    def create_generation(self, pointer: Pointer) -> None: ...
    def discard_generation(self, pointer: Pointer) -> None: ...
    def announce(self, pointer: Pointer) -> None: ...
    def clear_announcement(self) -> None: ...
    def switch(self, new: Pointer, old: Pointer | None) -> None: ...
    def rebuild_lock(self) -> contextmanager: ...
    def rebuild_running(self) -> bool: ...
    def bit_count(self, pointer: Pointer) -> int: ...
    def shard_bytes(self, pointer: Pointer, shard: int) -> bytes: ...
    def close(self) -> None: ...


# --- local files ---------------------------------------------------------------------------------
class LocalStore:
    """Shard files under one directory, memory-mapped read-only by readers; writers map a shard
    writable under an exclusive ``flock`` on it and ``msync`` before returning."""

    kind = "local"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dir = str(self.directory)
        self._paths: list[str] = []
        self._maps: dict[int, tuple[int, mmap.mmap]] = {}
        self._lock = threading.Lock()

    # paths
    def shard_path(self, shard: int) -> str:
        paths = self._paths
        while len(paths) <= shard:
            paths.append(os.path.join(self._dir, f"shard-{len(paths):03d}.bin"))
        return paths[shard]

    def _building_path(self, generation: int, shard: int) -> str:
        return f"{self.shard_path(shard)}.g{generation}.tmp"

    def _marker_path(self, generation: int) -> Path:
        return self.directory / f"marker-g{generation}"

    # pointer, announcement
    def _read_json(self, name: str) -> Pointer | None:
        try:
            return Pointer.loads((self.directory / name).read_text())
        except FileNotFoundError:
            return None

    def _write_json(self, name: str, pointer: Pointer) -> None:
        tmp = self.directory / f"{name}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "w") as f:
            f.write(pointer.dumps())
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, self.directory / name)
        _fsync_dir(self.directory)

    def read_pointer(self) -> Pointer | None:
        return self._read_json("current.json")

    def read_announcement(self) -> Pointer | None:
        return self._read_json("rebuilding.json")

    def announce(self, pointer: Pointer) -> None:
        self._write_json("rebuilding.json", pointer)

    def clear_announcement(self) -> None:
        _unlink(self.directory / "rebuilding.json")

    # markers: 8 bytes, big-endian, updated in place under flock
    def read_marker(self, generation: int) -> int | None:
        try:
            raw = self._marker_path(generation).read_bytes()
        except FileNotFoundError:
            return None
        return int.from_bytes(raw, "big") if len(raw) == 8 else None

    def advance_marker(self, generation: int, batch_id: int) -> None:
        fd = os.open(self._marker_path(generation), os.O_RDWR | os.O_CREAT, 0o664)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 8, 0)
            current = int.from_bytes(raw, "big") if len(raw) == 8 else 0
            if batch_id > current or len(raw) != 8:
                os.pwrite(fd, max(batch_id, current).to_bytes(8, "big"), 0)
                os.fsync(fd)
        finally:
            os.close(fd)

    # trust without the database
    def run_id(self) -> str | None:
        """Files have no server that could restart empty or from an older copy."""
        return None

    def record_checked(self, generation: int, run_id: str, marker: int) -> None:
        """Nothing to record: see :meth:`lost_writes_since_check`."""

    def lost_writes_since_check(self, generation: int, marker: int) -> str | None:
        """None: shard files on this host cannot have lost a write that a committed batch relied on.
        A writer sets the bits through a shared mapping and ``msync``s them (or ``fsync``s the shard
        in :meth:`sync`), then :meth:`advance_marker` rewrites the marker under ``flock`` and
        ``fsync``s it — all before its rows commit (``Writer.add``; ``RegistrationService`` commits
        inside ``BloomIndex.writing``). So the marker and the bits on disk are at least as new as
        every committed batch, with or without the database to compare. (A shard replaced by
        another generation's file is caught by the header check; putting back an old copy of the
        same generation by hand is not something this check can see.)"""
        return None

    # reading
    def header_generations(self, pointer: Pointer) -> list[int]:
        gens = []
        for shard in range(pointer.layout.shards):
            try:
                with open(self.shard_path(shard), "rb") as f:
                    gens.append(generation_of(f.read(HEADER_SIZE)))
            except FileNotFoundError:
                gens.append(0)
        return gens

    def _remap(self, shard: int, ino: int) -> mmap.mmap:
        with self._lock:
            entry = self._maps.get(shard)
            if entry is not None and entry[0] == ino:
                return entry[1]
            try:
                with open(self.shard_path(shard), "rb") as f:
                    st = os.fstat(f.fileno())
                    header = parse_header(f.read(HEADER_SIZE))
                    if st.st_size < HEADER_SIZE + (header.num_slices * header.bits_per_slice + 7) // 8:
                        raise StaleShard(0)
                    mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except (FileNotFoundError, HeaderError):
                self._maps.pop(shard, None)
                raise StaleShard(0) from None
            # the old mapping is dropped, not closed: another thread may still be reading it
            self._maps[shard] = (st.st_ino, mm)
            return mm

    def _mapped(self, generation: int, shard: int) -> mmap.mmap:
        """The shard's current mapping (remapped when its file was replaced); raises
        :class:`StaleShard` when the file is missing or of another generation."""
        try:
            ino = os.stat(self.shard_path(shard)).st_ino
        except FileNotFoundError:
            raise StaleShard(0) from None
        entry = self._maps.get(shard)
        mm = entry[1] if entry is not None and entry[0] == ino else self._remap(shard, ino)
        if int.from_bytes(mm[:8], "big") != generation:
            raise StaleShard(int.from_bytes(mm[:8], "big"))
        return mm

    def probe(self, generation: int, shard: int, offsets: list[int]) -> bool:
        mm = self._mapped(generation, shard)
        for o in offsets:
            if not mm[HEADER_SIZE + (o >> 3)] & (0x80 >> (o & 7)):
                return False
        return True

    def probe_batch(self, generation: int, shards, offsets) -> list[bool]:
        """:meth:`probe` for many numbers in one pass (a bulk verification): ``shards`` and
        ``offsets`` as :meth:`Layout.offsets_many` gives them (numpy arrays); each touched shard's
        inode and generation are checked once, and its bits read for all its numbers at once.
        Raises :class:`StaleShard` as :meth:`probe` does."""
        import numpy as np

        found = np.empty(len(shards), dtype=bool)
        for shard in np.unique(shards).tolist():
            bits = np.frombuffer(self._mapped(generation, shard), dtype=np.uint8)
            mine = shards == shard
            offs = offsets[mine]
            held = bits[(offs >> np.uint64(3)).astype(np.intp) + HEADER_SIZE] & \
                (np.uint8(0x80) >> (offs & np.uint64(7)).astype(np.uint8))
            found[mine] = held.all(axis=1)
        return found.tolist()

    def probe_many(self, generation: int, items: list[tuple[int, list[int]]]) -> list[bool]:
        out = []
        for shard, offsets in items:
            try:
                out.append(self.probe(generation, shard, offsets))
            except StaleShard:
                out.append(False)
        return out

    def bit_count(self, pointer: Pointer) -> int:
        total = 0
        for shard in range(pointer.layout.shards):
            with open(self.shard_path(shard), "rb") as f:
                f.seek(HEADER_SIZE)
                while chunk := f.read(1 << 22):
                    total += int.from_bytes(chunk, "big").bit_count()
        return total

    def shard_bytes(self, pointer: Pointer, shard: int) -> bytes:
        with open(self.shard_path(shard), "rb") as f:
            return f.read()

    # writing
    def write_bits(self, pointer: Pointer, by_shard: dict, *, building: bool, sync: bool = True) -> bool:
        """Set bits in each shard (offsets as a list, or a numpy array); False when a shard is
        missing or of another generation (skipped).
        With ``sync=False`` the caller promises to call :meth:`sync` before anything commits."""
        ok = True
        for shard, offsets in by_shard.items():
            path = self._building_path(pointer.generation, shard) if building else self.shard_path(shard)
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                ok = False
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if generation_of(os.pread(fd, HEADER_SIZE, 0)) != pointer.generation:
                    ok = False
                    continue
                size = pointer.layout.shard_bytes
                if os.fstat(fd).st_size < size:
                    ok = False
                    continue
                with mmap.mmap(fd, size) as mm:
                    if isinstance(offsets, list):
                        bits = bitarray(buffer=memoryview(mm)[HEADER_SIZE:], endian="big")  # MSB-first, as Redis
                        try:
                            bits[offsets] = 1  # in C: a chunk sets hundreds of thousands of bits
                        finally:
                            del bits  # release the map's buffer before it closes
                    else:  # a numpy array (a big batch's, BatchBits): no Python int per offset
                        import numpy as np

                        view = np.frombuffer(mm, dtype=np.uint8, offset=HEADER_SIZE)
                        try:
                            set_bits(view, offsets)
                        finally:
                            del view
                    if sync and not building:  # a generation being built is fsynced once, at the switch
                        mm.flush()
            finally:
                os.close(fd)
        return ok

    def merge_bits(self, pointer: Pointer, shard: int, bits, *, building: bool, sync: bool = True) -> bool:
        """OR ``bits`` (a numpy ``uint8`` array of the shard's filter bytes, store order) into the
        shard in one pass: a big batch's bits gathered per shard (``BatchBits``). False when the
        shard is missing or of another generation, as :meth:`write_bits`."""
        import numpy as np

        path = self._building_path(pointer.generation, shard) if building else self.shard_path(shard)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if generation_of(os.pread(fd, HEADER_SIZE, 0)) != pointer.generation:
                return False
            size = pointer.layout.shard_bytes
            if os.fstat(fd).st_size < size:
                return False
            with mmap.mmap(fd, size) as mm:
                view = np.frombuffer(mm, dtype=np.uint8, count=len(bits), offset=HEADER_SIZE)
                try:
                    np.bitwise_or(view, bits, out=view)
                finally:
                    del view  # release the map's buffer before it closes
                if sync and not building:
                    mm.flush()
        finally:
            os.close(fd)
        return True

    def merge_offsets(self, pointer: Pointer, shard: int, offsets, *, building: bool, sync: bool = True) -> bool:
        """Set many offsets of one shard (a numpy array): on a mapped file that is
        :meth:`write_bits` already (no bitmap to send)."""
        return self.write_bits(pointer, {shard: offsets}, building=building, sync=sync)

    def sync(self, pointer: Pointer) -> None:
        """Write the current generation's dirty shard pages to disk (after unsynced writes)."""
        for shard in range(pointer.layout.shards):
            try:
                fd = os.open(self.shard_path(shard), os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def create_generation(self, pointer: Pointer) -> None:
        layout = pointer.layout
        for shard in range(layout.shards):
            path = self._building_path(pointer.generation, shard)
            with open(path, "wb") as f:
                f.write(layout.header(pointer.generation, shard))
                f.truncate(layout.shard_bytes)
                f.flush()
                os.fsync(f.fileno())
        self.advance_marker(pointer.generation, 0)

    def discard_generation(self, pointer: Pointer) -> None:
        for shard in range(pointer.layout.shards):
            _unlink(self._building_path(pointer.generation, shard))
        _unlink(self._marker_path(pointer.generation))

    def discard_stale(self, keep: set[int]) -> None:
        """Remove building files and markers of generations not in ``keep`` (a crashed rebuild's)."""
        for p in self.directory.iterdir():
            name = p.name
            if name.startswith("shard-") and name.endswith(".tmp") or name.startswith("marker-g"):
                gen = name.rsplit(".g", 1)[-1].removesuffix(".tmp") if name.endswith(".tmp") else name[8:]
                if gen.isdigit() and int(gen) not in keep:
                    _unlink(p)

    def switch(self, new: Pointer, old: Pointer | None) -> None:
        # rename, never truncate: readers that still map an old file keep a valid mapping
        for shard in range(new.layout.shards):
            path = self._building_path(new.generation, shard)
            fd = os.open(path, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(path, self.shard_path(shard))
        if old is not None:
            for shard in range(new.layout.shards, old.layout.shards):
                _unlink(self.shard_path(shard))
        _fsync_dir(self.directory)
        self._write_json("current.json", new)
        self.clear_announcement()
        if old is not None and old.generation != new.generation:
            _unlink(self._marker_path(old.generation))

    # rebuild lock
    def rebuild_lock(self):
        return exclusive_flock(self.directory / "rebuild.lock",
                               lambda: RebuildInProgress("a Bloom rebuild is already running on this host"))

    def rebuild_running(self) -> bool:
        fd = os.open(self.directory / "rebuild.lock", os.O_RDWR | os.O_CREAT, 0o664)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def close(self) -> None:
        with self._lock:
            self._maps.clear()


@contextmanager
def exclusive_flock(path, busy) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (made if missing) for the block; when another
    process holds it, raise ``busy()`` at once instead of waiting."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy() from None
        yield
    finally:
        os.close(fd)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- Redis -----------------------------------------------------------------------------------------
_ADVANCE_MARKER = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local b = tonumber(ARGV[1])
if b > v or redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], math.max(b, v)) end
return 1
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: bits a ``BITFIELD`` of :meth:`RedisStore.write_bits` sets: Redis spends ~0.15 µs a bit on it, so a
#: command holds it ~1 ms (bench/bloom_writes.py)
_OPS_PER_COMMAND = 8192
#: bits one exchange of :meth:`RedisStore.write_bits` carries: its commands (~25 bytes a bit) go in
#: one write, their replies are read after it
_OPS_PER_EXCHANGE = 16 * _OPS_PER_COMMAND
# Deletes KEYS[1] when its first 8 bytes (a shard's generation) are zero: a key that a write's
# BITFIELD made because the shard was gone (a lost key, or a generation discarded meanwhile).
# A real shard is never made this way (create_generation writes its header first), so such a key
# holds no one's bits but would keep its memory.
_DROP_STRAY = """
local head = redis.call('GETRANGE', KEYS[1], 0, 7)
if head == '' or head == string.rep('\\0', 8) then return redis.call('DEL', KEYS[1]) end
return 0
"""

# ORs a batch's bits for one shard, sent as a temporary key KEYS[2] (the shard's layout with a
# zero header), into the shard KEYS[1] after checking its generation (ARGV[1]); the temporary key
# goes either way. 0 when the shard is not this generation's (nothing set).
_MERGE_BITS = """
if redis.call('GETRANGE', KEYS[1], 0, 7) ~= ARGV[1] then
  redis.call('DEL', KEYS[2])
  return 0
end
redis.call('BITOP', 'OR', KEYS[1], KEYS[1], KEYS[2])
redis.call('DEL', KEYS[2])
return 1
"""
def merge_key(shard_key: str) -> str:
    """A new temporary key for a merge into ``shard_key``, tagged with the shard's key: both hash
    to the same slot, as the script that ORs one into the other needs on Redis Cluster."""
    return f"{{{shard_key}}}:merge:{uuid.uuid4().hex}"


#: bytes of a shard's bitmap a merge sends per command (the client copies each while packing it)
MERGE_SLICE = 4 * 1024 * 1024
#: a merge's temporary key outlives a client that died between sending it and merging it by this long
_MERGE_KEY_SECONDS = 3600
#: socket timeout of the merges' own connection: one sends up to a 64 MiB shard and waits for a BITOP
#: over it, far past the registry client's 0.5 s meant for lookups on a busy host
MERGE_SOCKET_SECONDS = 60


def bit_reads(key: str, bits) -> tuple[Packed, object]:
    """``BITFIELD_RO key GET i64 0 GET u1 <bit> …`` for every bit of ``bits`` (a numpy array of
    offsets below 2**32), packed in the Redis protocol here: redis-py's and hiredis's packers take
    ~0.5 µs an argument in Python calls, 5 ms for a bulk request's 30,000 arguments, where numpy
    writes the offsets' digits a column at a time for all of them (bits of one digit count
    together). Returns the command and the order the bits are asked in: the reply's ``1 + i``-th
    value is the bit ``bits[order[i]]``."""
    return _bitfield("BITFIELD_RO", key, b"$3\r\nGET\r\n$2\r\nu1\r\n", b"", 3, bits)


def bit_writes(key: str, bits) -> Packed:
    """``BITFIELD key GET i64 0 SET u1 <bit> 1 …`` for every bit of ``bits`` (a numpy array of
    offsets below 2**32, header included), packed as :func:`bit_reads` packs its reads: one
    command sets thousands of bits with no Python call per bit. The reply's first value is the
    generation the key held before the bits were set (see :meth:`RedisStore.write_bits`)."""
    return _bitfield("BITFIELD", key, b"$3\r\nSET\r\n$2\r\nu1\r\n", b"$1\r\n1\r\n", 4, bits)[0]


def _bitfield(name: str, key: str, prefix: bytes, suffix: bytes, arity: int, bits) -> tuple[Packed, object]:
    """``name key GET i64 0`` then, for each bit, ``prefix`` (the op's leading arguments), the
    bit's decimal digits as one argument and ``suffix`` (``arity`` arguments an op), in the Redis
    protocol; with the order the bits were written in (grouped by their count of digits)."""
    import numpy as np

    bits = bits.astype(np.uint32)
    widths = np.searchsorted(_POWERS_OF_TEN, bits, side="right") + 1  # decimal digits of each
    counts = np.bincount(widths)
    parts, order = [], []
    for width in np.flatnonzero(counts).tolist():
        these = np.flatnonzero(widths == width) if counts[width] != len(bits) else np.arange(len(bits))
        order.append(these)
        head = prefix + f"${width}\r\n".encode()
        tail = b"\r\n" + suffix
        # one column per byte of the op's arguments, one row per bit; transposed when joined
        table = np.empty((len(head) + width + len(tail), len(these)), dtype=np.uint8)
        table[:len(head)] = np.frombuffer(head, dtype=np.uint8)[:, None]
        table[len(head) + width:] = np.frombuffer(tail, dtype=np.uint8)[:, None]
        value = bits[these]
        for column in range(len(head) + width - 1, len(head), -1):
            rest = value // np.uint32(10)
            table[column] = value - rest * np.uint32(10) + np.uint32(48)
            value = rest
        table[len(head)] = value + np.uint32(48)
        parts.append(table.T.tobytes())
    start = f"*{5 + arity * len(bits)}\r\n${len(name)}\r\n{name}\r\n${len(key.encode())}\r\n{key}\r\n" \
            "$3\r\nGET\r\n$3\r\ni64\r\n$1\r\n0\r\n"
    return Packed(start.encode() + b"".join(parts)), np.concatenate(order) if order else np.arange(0)


_POWERS_OF_TEN = [10**i for i in range(1, 10)]


class RedisStore:
    """One Redis string per shard (`rnr:bloom:g{gen}:s{shard}`); a lookup is one `BITFIELD_RO` on one key."""

    kind = "redis"
    POINTER = "rnr:bloom:current"
    ANNOUNCEMENT = "rnr:bloom:rebuilding"
    REBUILD_LOCK = "rnr:bloom:rebuild-lock"
    REBUILD_LOCK_SECONDS = 6 * 3600

    def __init__(self, client, direct: DirectRedis | None = None):
        self.client = client
        #: the per-thread connection lookups talk on (shared with the verify edge's rate-limit count)
        self.direct = direct or DirectRedis(client)
        self._advance = client.register_script(_ADVANCE_MARKER)
        self._release = client.register_script(_RELEASE_LOCK)
        self._drop_stray = client.register_script(_DROP_STRAY)
        self._writer: DirectRedis | None = None  # bit writes' connection, see _writes
        self._merge_bits = client.register_script(_MERGE_BITS)
        self._merge_client = None  # made on the first merge (a big import's), see _merging

    @staticmethod
    def key(generation: int, shard: int) -> str:
        return f"rnr:bloom:g{generation}:s{shard}"

    @staticmethod
    def marker_key(generation: int) -> str:
        return f"rnr:bloom:g{generation}:marker"

    def _read(self, key: str) -> Pointer | None:
        raw = self.client.get(key)
        return None if raw is None else Pointer.loads(raw)

    def read_pointer(self) -> Pointer | None:
        return self._read(self.POINTER)

    def read_announcement(self) -> Pointer | None:
        return self._read(self.ANNOUNCEMENT)

    def announce(self, pointer: Pointer) -> None:
        self.client.set(self.ANNOUNCEMENT, pointer.dumps())

    def clear_announcement(self) -> None:
        self.client.delete(self.ANNOUNCEMENT)

    def read_marker(self, generation: int) -> int | None:
        raw = self.client.get(self.marker_key(generation))
        return None if raw is None else int(raw)

    def advance_marker(self, generation: int, batch_id: int) -> None:
        self._advance(keys=[self.marker_key(generation)], args=[int(batch_id)])

    # trust without the database
    @staticmethod
    def checked_key(generation: int) -> str:
        return f"rnr:bloom:g{generation}:checked"

    def run_id(self) -> str | None:
        """The server's ``run_id`` (``INFO server``): new at every start, so a Redis restarted empty
        or from an older snapshot, or a replica promoted in its place, has another one. None when
        the server refuses ``INFO`` (then no process can trust this store without the database)."""
        try:
            return str(self.client.info("server")["run_id"])
        except (ResponseError, KeyError):
            return None

    def record_checked(self, generation: int, run_id: str, marker: int) -> None:
        """Remember, beside the generation's marker, that a database-backed check found this
        generation intact on the server with ``run_id`` (read *before* the check, so a restart
        during the check leaves a record no server matches)."""
        self.client.set(self.checked_key(generation), json.dumps({"run_id": run_id, "marker": int(marker)}))

    def lost_writes_since_check(self, generation: int, marker: int) -> str | None:
        """None when this server is the one a database-backed check last found intact and has
        not restarted since (same ``run_id``): a running Redis keeps every write it acknowledged.
        Otherwise why it cannot be trusted without the database."""
        raw = self.client.get(self.checked_key(generation))
        if raw is None:
            return f"no database-backed check recorded for generation {generation}"
        try:
            record = json.loads(raw)
            recorded_run, recorded_marker = str(record["run_id"]), int(record["marker"])
        except (ValueError, KeyError, TypeError):
            return f"unreadable check record of generation {generation}"
        if recorded_run != self.run_id():
            return "Redis restarted since the last database-backed check (another run_id)"
        if marker < recorded_marker:
            return f"marker {marker} behind the last checked marker {recorded_marker}"
        return None

    def header_generations(self, pointer: Pointer) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(pointer.layout.shards):
            pipe.getrange(self.key(pointer.generation, shard), 0, HEADER_SIZE - 1)
        return [generation_of(raw) for raw in pipe.execute()]

    def probe_command(self, generation: int, shard: int, offsets: list[int]) -> tuple:
        """The probe as one command (marker of the shard's generation, then its bits), so that a
        caller can send it together with commands of its own (see portal/edge.py)."""
        args = ["BITFIELD_RO", f"rnr:bloom:g{generation}:s{shard}", "GET", "i64", 0]
        for o in offsets:
            args += ("GET", "u1", HEADER_BITS + o)
        return tuple(args)

    def probe_batch_commands(self, generation: int, shards, offsets) -> list[tuple[int, Packed, object]]:
        """The probes of many numbers (``shards`` and ``offsets`` as :meth:`Layout.offsets_many`
        gives them) as one ``BITFIELD_RO`` per touched shard — its generation marker, then every
        bit of its numbers — so that Redis answers a thousand numbers with one reply instead of a
        thousand: (shard, command, order) each, to send in one exchange and to read with
        :meth:`probe_batch_reply`. The command is packed here (:func:`bit_reads`)."""
        import numpy as np

        commands = []
        for shard in np.unique(shards).tolist():
            mine = shards == shard
            bits = (offsets if mine.all() else offsets[mine]) + np.uint64(HEADER_BITS)
            command, order = bit_reads(self.key(generation, shard), bits.ravel())
            commands.append((shard, command, order))
        return commands

    @staticmethod
    def probe_batch_reply(generation: int, reply, order, num_slices: int) -> list[bool]:
        """Read a batch command's reply (``order`` as :meth:`probe_batch_commands` gave it): for
        each of its numbers, in their order, are all of its bits set? Raises :class:`StaleShard`
        for another generation."""
        import numpy as np

        if reply[0] != generation:
            raise StaleShard(reply[0])
        bits = np.empty(len(order), dtype=np.uint8)
        bits[order] = np.frombuffer(bytes(reply[1:]), dtype=np.uint8)
        return bits.reshape(-1, num_slices).all(axis=1).tolist()

    @staticmethod
    def probe_reply(generation: int, reply) -> bool:
        """Read a probe's reply: all bits set? Raises :class:`StaleShard` for another generation."""
        if reply[0] != generation:
            raise StaleShard(reply[0])
        return all(reply[1:])

    def probe(self, generation: int, shard: int, offsets: list[int]) -> bool:
        return self.probe_reply(generation, self.direct.call(*self.probe_command(generation, shard, offsets)))

    def probe_many(self, generation: int, items: list[tuple[int, list[int]]]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for shard, offsets in items:
            args = ["BITFIELD_RO", self.key(generation, shard), "GET", "i64", 0]
            for o in offsets:
                args += ("GET", "u1", HEADER_BITS + o)
            pipe.execute_command(*args)
        return [reply[0] == generation and all(reply[1:]) for reply in pipe.execute()]

    def sync(self, pointer: Pointer) -> None:
        """Nothing to do: each pipeline has been executed by the time write_bits returns."""

    def write_bits(self, pointer: Pointer, by_shard: dict, *, building: bool, sync: bool = True) -> bool:
        """Set the bits at ``by_shard``'s offsets (shard -> a list or numpy array of offsets in the
        shard's filter); False when a shard's header was not this generation's (the key was lost).

        Each shard's offsets go sorted, :data:`_OPS_PER_COMMAND` a ``BITFIELD key GET i64 0 SET u1
        o 1 …`` packed with numpy (:func:`bit_writes`): one command per key (Redis Cluster) that
        reads the shard's generation and sets the bits in one step, at ~0.15 µs of Redis a bit
        where the script that took packed offsets and called ``SETBIT`` per offset cost ~1.1–1.9 µs
        (bench/bloom_writes.py). The generation is checked in the reply, after the fact: a
        ``BITFIELD`` on a key that is gone makes a key of zeros, which no reader takes for a shard
        (generation 0) and which is deleted here at once (:data:`_DROP_STRAY`). Every command has
        been answered when this returns; an error reply (out of memory, ``NOREPLICAS``) or a
        failed exchange raises, and the writer's batch rolls back."""
        import numpy as np

        generation = pointer.generation
        commands: list[Packed] = []
        keys: list[str] = []
        count = 0
        ok = True
        for shard, offsets in by_shard.items():
            bits = np.sort(np.asarray(offsets, dtype=np.uint64)) + np.uint64(HEADER_BITS)
            key = self.key(generation, shard)
            for start in range(0, len(bits), _OPS_PER_COMMAND):
                part = bits[start:start + _OPS_PER_COMMAND]
                commands.append(bit_writes(key, part))
                keys.append(key)
                count += len(part)
                if count >= _OPS_PER_EXCHANGE:
                    ok = self._send_writes(generation, commands, keys) and ok
                    commands, keys, count = [], [], 0
        if commands:
            ok = self._send_writes(generation, commands, keys) and ok
        return ok

    def _send_writes(self, generation: int, commands: list[Packed], keys: list[str]) -> bool:
        replies = checked(self._writes().exchange(commands))
        stray = {key for key, reply in zip(keys, replies) if reply[0] != generation}
        for key in stray:
            self._drop_stray(keys=[key], client=self._merging())
        return not stray

    def _writes(self) -> DirectRedis:
        """The connection bit writes go on: the merges' client (:meth:`_merging`), talked to as the
        lookups talk (:class:`DirectRedis`: packed commands, one write)."""
        if self._writer is None:
            self._writer = DirectRedis(self._merging())
        return self._writer

    def merge_bits(self, pointer: Pointer, shard: int, bits, *, building: bool, sync: bool = True) -> bool:
        """OR ``bits`` (a numpy ``uint8`` array of the shard's filter bytes, store order) into the
        shard with one ``BITOP OR`` (a script that checks the generation first): the bytes travel
        once as a temporary key instead of a command per offset. False when the shard's header
        is not this generation's."""
        view = memoryview(bits).cast("B")
        # in slices: the client copies each command whole while packing it, so a 64 MiB shard sent
        # as one SETRANGE cost 64 MiB more of the importer's memory; a slice costs MERGE_SLICE
        return self._merge(pointer, shard, ((start, view[start:start + MERGE_SLICE])
                                            for start in range(0, len(view), MERGE_SLICE)))

    def merge_offsets(self, pointer: Pointer, shard: int, offsets, *, building: bool, sync: bool = True) -> bool:
        """:meth:`merge_bits` of the bitmap that ``offsets`` (a numpy array of offsets in the shard's
        filter, many: a dense share of the shard) set, built here :data:`MERGE_SLICE` bytes at a
        time, so that the importer never holds the whole bitmap (64 MiB at national capacity)."""
        import numpy as np

        ordered = np.sort(offsets.astype(np.uint32, copy=False))  # u32, as gathered: no wider copy
        size = pointer.layout.bits_bytes

        def pieces():
            # each slice's first bit, and the filter's last + 1 (at most 2**32 - 512: a u32)
            firsts = [start * 8 for start in range(0, size, MERGE_SLICE)] + [pointer.layout.num_bits]
            bounds = np.searchsorted(ordered, np.array(firsts, dtype=np.uint32))
            for i, start in enumerate(range(0, size, MERGE_SLICE)):
                mine = ordered[bounds[i]:bounds[i + 1]]
                if len(mine):
                    piece = np.zeros(min(MERGE_SLICE, size - start), dtype=np.uint8)
                    set_bits(piece, mine - np.uint32(start * 8))
                    yield start, memoryview(piece)

        return self._merge(pointer, shard, pieces())

    def _merge(self, pointer: Pointer, shard: int, pieces) -> bool:
        """Send ``(byte offset, bytes)`` pieces of a bitmap as a temporary key, then OR it into the shard."""
        key = self.key(pointer.generation, shard)
        temp = merge_key(key)
        client = self._merging()
        first = True
        for start, piece in pieces:
            client.setrange(temp, HEADER_SIZE + start, piece)
            if first:
                client.expire(temp, _MERGE_KEY_SECONDS)
                first = False
        if first:  # no bits
            return self.client.getrange(key, 0, 7) == pointer.generation.to_bytes(8, "big")
        return self._merge_bits(keys=[key, temp], args=[pointer.generation.to_bytes(8, "big")], client=client) == 1

    def _merging(self):
        """A client of the same server (same connection class and settings) with a socket timeout
        of :data:`MERGE_SOCKET_SECONDS`, for merges only."""
        if self._merge_client is None:
            import redis

            pool = self.client.connection_pool
            self._merge_client = redis.Redis(connection_pool=redis.ConnectionPool(
                connection_class=pool.connection_class,
                **{**pool.connection_kwargs, "socket_timeout": MERGE_SOCKET_SECONDS}))
        return self._merge_client

    def create_generation(self, pointer: Pointer) -> None:
        """Every shard key (header, then zeros) and the marker; on the merges' connection: Redis
        zeroes 64 MiB a shard, and at national capacity (64 shards, 4 GiB) the pipeline's replies
        come seconds later, far past the registry client's 0.5 s timeout."""
        layout = pointer.layout
        pipe = self._merging().pipeline(transaction=False)
        for shard in range(layout.shards):
            key = self.key(pointer.generation, shard)
            pipe.set(key, layout.header(pointer.generation, shard))
            pipe.setrange(key, layout.shard_bytes - 1, b"\0")
        pipe.set(self.marker_key(pointer.generation), 0)
        pipe.execute()

    def discard_generation(self, pointer: Pointer) -> None:
        keys = [self.key(pointer.generation, s) for s in range(pointer.layout.shards)]
        self.client.unlink(*keys, self.marker_key(pointer.generation), self.checked_key(pointer.generation))

    def switch(self, new: Pointer, old: Pointer | None) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.POINTER, new.dumps())
        pipe.delete(self.ANNOUNCEMENT)
        pipe.execute()
        if old is not None and old.generation != new.generation:
            # readers still holding the old pointer find the key gone (generation 0), re-read the
            # pointer and retry, so the old keys can go at once; UNLINK frees them off the main thread
            self.discard_generation(old)

    @contextmanager
    def rebuild_lock(self) -> Iterator[None]:
        token = uuid.uuid4().hex
        if not self.client.set(self.REBUILD_LOCK, token, nx=True, ex=self.REBUILD_LOCK_SECONDS):
            raise RebuildInProgress("a Bloom rebuild is already running (Redis lock held)")
        try:
            yield
        finally:
            self._release(keys=[self.REBUILD_LOCK], args=[token])

    def rebuild_running(self) -> bool:
        return bool(self.client.exists(self.REBUILD_LOCK))

    def bit_count(self, pointer: Pointer) -> int:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(pointer.layout.shards):
            pipe.bitcount(self.key(pointer.generation, shard), HEADER_SIZE, -1)
        return sum(pipe.execute())

    def shard_bytes(self, pointer: Pointer, shard: int) -> bytes:
        return self.client.get(self.key(pointer.generation, shard)) or b""

    def close(self) -> None:
        self.direct.drop()
        if self._writer is not None:
            self._writer.drop()
            self._writer = None
        if self._merge_client is not None:
            self._merge_client.close()
            self._merge_client = None

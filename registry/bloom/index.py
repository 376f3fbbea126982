"""`BloomIndex`: the pre-check in front of the report_numbers table, and its life cycle.

`lookup` answers False (definitely not registered, zero SQL), True (maybe: confirm in the
database) or None (the index cannot be trusted now: ask the database). Writers set bits in every
live generation before their rows commit; a rebuild builds a new generation from a database
snapshot while lookups go on, then switches atomically (docs/architecture.md, "No false negatives").
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

from redis.exceptions import ConnectionError as RedisConnectionError, ResponseError
from sqlalchemy import text

from registry.bloom.gate import WriterGate
from registry.bloom.layout import Layout, Pointer
from registry.bloom.snapshot import SnapshotUnavailable, shard_bits
from registry.bloom.stores import LocalStore, RebuildInProgress, RedisStore, ShardStore, StaleShard, set_bits

CHUNK = 50_000
#: rows a rebuild reads and hashes at a time
REBUILD_PART = 20_000
#: the shard bitmaps one pass of a rebuild builds stay within this many bytes (a shard is at most
#: 64 MiB, so at least one fits): one pass over the table up to ~250 M numbers of capacity
REBUILD_MEMORY = 512 * 1024 * 1024
#: a chunk of at least this many numbers is hashed with numpy and its bits merged per shard
#: (:class:`BatchBits`); smaller ones (an API call) go offset by offset
MANY = 2_000
#: the gathered bitmaps of one batch stay within this many bytes (shards past it gather offsets)
DENSE_BUDGET = 64 * 1024 * 1024
#: a shard's bits are sent whole (one merge) when its bitmap has at most this many bytes per bit
#: to set, else offset by offset. ``RedisStore.write_bits`` sets ~2.3 M offsets/s (packed
#: ``BITFIELD``, ~0.17 µs of Redis CPU each), a 64 MiB bitmap's merge takes ~0.23 s (0.09 s of
#: Redis): the same time as ~530,000 offsets, one per ~127 bytes (bench/bloom_writes.py, 2026-12-01)
BYTES_PER_OFFSET = 128
#: offsets a big batch gathers (for shards without a bitmap) before the writer spills them into
#: the store (``Writer.spill``): 8 MiB as u32, so that the gathering's memory does not grow with
#: the file whatever the registry's capacity, the bits go while the rows load, and what is left
#: for the end (written after the last chunk, before the commit) is at most ~1 s of writes
OFFSETS_BUDGET = 2_000_000
#: after a store error, lookups answer None at once for this long instead of each waiting on a timeout.
BREAKER_SECONDS = 5.0


@dataclass(frozen=True)
class BloomConfig:
    capacity: int  # total capacity across shards (numbers)
    error_rate: float = 0.001
    shards: int = 0  # 0 = choose so each shard is about 8–64 MiB (min 1)
    rebuild_memory: int = 0  # bytes of shard bitmaps a rebuild builds per pass (0: REBUILD_MEMORY)


class BloomStoreError(RuntimeError):
    """A write could not reach the store; the caller's unit of work must roll back."""


def open_bloom_index(*, config: BloomConfig, engine, directory: Path, redis=None, direct_redis=None,
                     logger=None) -> "BloomIndex":
    """A Bloom index over the Redis store when ``redis`` is given, else over shard files in ``directory``.

    ``directory`` also holds ``writers.lock`` (the writer gate on SQLite). Give the Redis client
    short socket timeouts: a lookup waits at most that long before answering None. ``direct_redis``
    (a :class:`registry.infra.redisdirect.DirectRedis` of that client) carries the lookups; the
    verify edge sends its rate-limit count on the same connection.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    store: ShardStore = RedisStore(redis, direct=direct_redis) if redis is not None else LocalStore(directory)
    return BloomIndex(config=config, engine=engine, store=store, gate=WriterGate(engine=engine, directory=directory),
                      logger=logger or logging.getLogger("registry.bloom"))


class Probe:
    """One lookup (see :meth:`BloomIndex.probe`): True maybe registered, False certainly not,
    None ask the database."""

    __slots__ = ("_index", "number", "_pointer", "command", "result")

    def __init__(self, index: "BloomIndex", number: str, pointer: Pointer | None, command: tuple | None,
                 result: bool | None) -> None:
        self._index, self.number, self._pointer = index, number, pointer
        self.command, self.result = command, result

    def answer(self, reply) -> bool | None:
        """The answer from the command's reply (an error reply in its place means "ask the database")."""
        if isinstance(reply, Exception):
            return self.failed(reply)
        try:
            return RedisStore.probe_reply(self._pointer.generation, reply)
        except StaleShard as exc:
            return self._index._after_stale(self.number, self._pointer, exc.generation)

    def failed(self, exc: Exception) -> None:
        """The exchange that carried the command failed: ask the database."""
        self._index._failed("lookup", exc)
        return None


class BatchProbe:
    """The lookups of many numbers (see :meth:`BloomIndex.probe_many`), in two halves as
    :class:`Probe`: ``commands`` to send in one exchange — one ``BITFIELD_RO`` per touched Redis
    shard; none when the answers are known already, in ``results`` (local shards, database mode)
    — then ``answer(replies)``, or ``failed(exc)`` when the exchange failed. Each answer is True
    (maybe registered), False (certainly not) or None (ask the database), number by number."""

    __slots__ = ("_index", "numbers", "_pointer", "_shards", "_sent", "_orders", "commands", "results")

    def __init__(self, index: "BloomIndex", numbers: list[str], pointer: Pointer | None,
                 commands: list[tuple], results: list[bool | None] | None, shards=None) -> None:
        self._index, self.numbers, self._pointer, self._shards = index, numbers, pointer, shards
        self._sent = [shard for shard, _, _ in commands]  # (shard, command, order): RedisStore.probe_batch_commands
        self.commands = [command for _, command, _ in commands]
        self._orders = [order for _, _, order in commands]
        self.results = results

    def answer(self, replies: list) -> list[bool | None]:
        """The answers from the commands' replies, in order (an error reply in a command's place
        means "ask the database" for its numbers; a shard of another generation is settled as a
        single probe's would be)."""
        pointer = self._pointer
        slices = pointer.layout.num_slices
        if len(self._sent) == 1 and not isinstance(replies[0], Exception):
            try:  # one shard (up to 10 M numbers by default): the reply is the answer, in order
                return RedisStore.probe_batch_reply(pointer.generation, replies[0], self._orders[0], slices)
            except StaleShard:
                pass
        positions = self._positions()
        out: list[bool | None] = [None] * len(self.numbers)
        for shard, order, reply in zip(self._sent, self._orders, replies):
            at = positions[shard]
            if isinstance(reply, Exception):
                self._index._failed("lookup", reply)
                continue
            try:
                found = RedisStore.probe_batch_reply(pointer.generation, reply, order, slices)
            except StaleShard as exc:
                found = [self._index._after_stale(self.numbers[i], pointer, exc.generation) for i in at]
            for i, result in zip(at, found):
                out[i] = result
        return out

    def _positions(self) -> dict[int, list[int]]:
        """The positions of each sent shard's numbers, in the order its command asks them."""
        if len(self._sent) == 1:
            return {shard: list(range(len(self.numbers))) for shard in self._sent}
        import numpy as np

        return {shard: np.flatnonzero(self._shards == shard).tolist() for shard in self._sent}

    def failed(self, exc: Exception) -> list[None]:
        """The exchange that carried the commands failed: ask the database for every number."""
        self._index._failed("lookup", exc)
        return [None] * len(self.numbers)


class Writer:
    """Sets bits for one unit of work; handed out by `BloomIndex.writing`."""

    def __init__(self, index: "BloomIndex"):
        self._index = index
        # generations that lost a shard during this unit of work: their marker stays where it
        # was for the rest of it, even through the batch's last (empty) add, so every other
        # process finds it behind the newest batch and asks the database
        self._lost: set[int] = set()

    def add(self, numbers: Iterable[str], *, batch_id: int, sync: bool = True) -> None:
        """Set the bits of ``numbers`` in every live generation, durably, then advance the
        newest-batch marker. Streams in chunks. Raises `BloomStoreError` when the store fails."""
        index = self._index
        store = index._store
        try:
            targets = index._write_targets()
            valid = {t.generation: True for t, _ in targets}
            it = iter(numbers)
            while chunk := list(islice(it, CHUNK)):
                if len(chunk) >= MANY:
                    gathered = BatchBits(targets)
                    gathered.add(chunk)
                    for generation, ok in gathered.write(store, targets, sync=sync).items():
                        valid[generation] = valid[generation] and ok
                    continue
                grouped: dict[tuple, dict[int, list[int]]] = {}
                for pointer, building in targets:
                    by_shard = grouped.get(_hash_key(pointer.layout))
                    if by_shard is None:
                        by_shard = grouped[_hash_key(pointer.layout)] = _group(pointer.layout, chunk)
                    if valid[pointer.generation] and not store.write_bits(pointer, by_shard, building=building,
                                                                         sync=sync):
                        valid[pointer.generation] = False
            self._advance(targets, valid, batch_id)
        except Exception as exc:
            index._failed("write", exc, breaker=False)
            raise BloomStoreError(f"Bloom store write failed: {exc}") from exc

    def gather(self) -> "BatchBits":
        """An empty :class:`BatchBits` for the generations live now, to fill with a big batch's
        numbers and hand to :meth:`merge` before the rows commit."""
        try:
            return BatchBits(self._index._write_targets())
        except Exception as exc:
            self._index._failed("write", exc, breaker=False)
            raise BloomStoreError(f"Bloom store read failed: {exc}") from exc

    def spill(self, gathered: "BatchBits") -> None:
        """Write ``gathered``'s offsets (once :attr:`BatchBits.full`) into every live generation
        now, durably, keeping its bitmaps for :meth:`merge`; the marker waits for the merge.
        Raises `BloomStoreError` when the store fails (the caller's batch rolls back)."""
        index = self._index
        try:
            gathered.spill(index._store, index._write_targets(), sync=True)
        except Exception as exc:
            index._failed("write", exc, breaker=False)
            raise BloomStoreError(f"Bloom store write failed: {exc}") from exc

    def merge(self, gathered: "BatchBits", *, batch_id: int) -> None:
        """Write gathered bits into every live generation (one merge per touched shard), durably,
        then advance the newest-batch marker. Raises `BloomStoreError` when the store fails.

        A generation announced after ``gathered`` began is skipped: this writer held the gate
        since before the announcement, so the rebuild's barrier waits for its commit and the
        rebuild's snapshot holds its rows (see :meth:`BloomIndex.rebuild`)."""
        index = self._index
        try:
            targets = index._write_targets()
            valid = gathered.write(index._store, targets, sync=True)
            self._advance(targets, valid, batch_id)
        except Exception as exc:
            index._failed("write", exc, breaker=False)
            raise BloomStoreError(f"Bloom store write failed: {exc}") from exc

    def _advance(self, targets: list[tuple[Pointer, bool]], valid: dict[int, bool], batch_id: int) -> None:
        index = self._index
        for pointer, building in targets:
            generation = pointer.generation
            if generation not in self._lost and valid.get(generation, True):
                index._store.advance_marker(generation, batch_id)
                continue
            newly = generation not in self._lost
            self._lost.add(generation)
            if newly and not building:
                index._distrust(f"shard of generation {generation} lost (seen by a writer)", rebuild=True)


    def sync(self) -> None:
        """Make bits written with ``add(..., sync=False)`` durable; call before the rows commit."""
        index = self._index
        try:
            for pointer, _ in index._write_targets():
                index._store.sync(pointer)
        except Exception as exc:
            index._failed("write", exc, breaker=False)
            raise BloomStoreError(f"Bloom store sync failed: {exc}") from exc


class BatchBits:
    """The bits of a big batch gathered here, per layout and shard, and written per shard in
    bulk (:meth:`write`, and :meth:`spill` on the way) — instead of a script call per offset.

    A shard whose gathered offsets are dense enough (one per :data:`BYTES_PER_OFFSET` bytes of its
    bitmap or more) gathers a bitmap instead (its filter's bytes, store order) while the bitmaps
    stay within :data:`DENSE_BUDGET`, and is merged with one ``BITOP OR`` on Redis (one OR over the
    mapped shard locally). The others keep their offsets; once they pass :data:`OFFSETS_BUDGET`
    the writer spills them (:attr:`full`, ``Writer.spill``) — sparse shards offset by offset in
    packed ``BITFIELD`` commands (``RedisStore.write_bits``), dense ones as a bitmap built and sent
    a slice at a time (``merge_offsets``) — so memory does not grow with the batch, whatever the
    registry's capacity: at national capacity (64 shards of 64 MiB) a 1 M-number file sets ~156,000
    bits a shard, one per 3.4 KB, all of them spilled as offsets while its rows load."""

    def __init__(self, targets: list[tuple[Pointer, bool]]) -> None:
        self.layouts: dict[tuple, Layout] = {}
        for pointer, _ in targets:
            self.layouts.setdefault(_hash_key(pointer.layout), pointer.layout)
        self._bitmaps: dict[tuple, object] = {}  # (layout key, shard) -> numpy uint8 array
        self._offsets: dict[tuple, list] = {}  # (layout key, shard) -> numpy uint32 arrays
        self._dense_bytes = 0
        self._pending = 0  # offsets in self._offsets
        self._lost: set[int] = set()  # generations a spill found a shard of missing or replaced

    @property
    def full(self) -> bool:
        """The gathered offsets reached :data:`OFFSETS_BUDGET`: spill them (``Writer.spill``)."""
        return self._pending >= OFFSETS_BUDGET

    def add(self, numbers: list[str]) -> None:
        for key, layout in self.layouts.items():
            self._add_hashed(key, layout, *layout.offsets_many(numbers))

    def _add_hashed(self, key: tuple, layout: Layout, shards, offsets) -> None:
        import numpy as np

        if layout.shards == 1:
            groups = [(0, offsets.ravel())]
        else:  # one stable sort by shard instead of a mask per touched shard (64 at national capacity)
            order = np.argsort(shards, kind="stable")
            touched, starts = np.unique(shards[order], return_index=True)
            ordered = offsets[order]
            ends = starts[1:].tolist() + [len(order)]
            groups = [(shard, ordered[a:b].ravel()) for shard, a, b in zip(touched.tolist(), starts.tolist(), ends)]
        for shard, offs in groups:
            bitmap = self._bitmaps.get((key, shard))
            if bitmap is not None:
                set_bits(bitmap, offs)
                continue
            parts = self._offsets.setdefault((key, shard), [])
            parts.append(offs.astype(np.uint32))
            self._pending += len(offs)
            # a shard becomes a bitmap once its offsets would cost more to send one by one
            gathered = sum(len(p) for p in parts)
            if (gathered * BYTES_PER_OFFSET >= layout.bits_bytes
                    and self._dense_bytes + layout.bits_bytes <= DENSE_BUDGET):
                bitmap = self._bitmaps[(key, shard)] = np.zeros(layout.bits_bytes, dtype=np.uint8)
                self._dense_bytes += layout.bits_bytes
                for part in self._offsets.pop((key, shard)):
                    set_bits(bitmap, part)
                self._pending -= gathered

    def detach(self) -> "BatchBits":
        """The offsets gathered so far, handed over as a batch of their own (to spill in another
        thread while this one gathers on); bitmaps stay here. A shard the spill finds lost is
        reported by this one's :meth:`write` too."""
        part = BatchBits([])
        part.layouts, part._offsets, part._pending, part._lost = self.layouts, self._offsets, self._pending, self._lost
        self._offsets, self._pending = {}, 0
        return part

    def spill(self, store: ShardStore, targets: list[tuple[Pointer, bool]], *, sync: bool) -> None:
        """Write the gathered offsets into each target generation now (the bitmaps stay for
        :meth:`write`); a generation that lost a shard meanwhile is reported by :meth:`write`."""
        mine = [(pointer, building, _hash_key(pointer.layout)) for pointer, building in targets]
        valid = {pointer.generation: True for pointer, _, key in mine if key in self.layouts}
        self._write_offsets(store, mine, valid, sync)
        self._lost.update(generation for generation, ok in valid.items() if not ok)

    def write(self, store: ShardStore, targets: list[tuple[Pointer, bool]], *, sync: bool) -> dict[int, bool]:
        """Merge the gathered bits into each target generation whose layout they were gathered
        for; per generation, False when a shard was missing or replaced (now or at a spill).
        Written once: each bitmap is let go as soon as every target has it, so that a registry
        of few, big shards (64 MiB each) holds one at a time, not all of them."""
        mine = [(pointer, building, _hash_key(pointer.layout)) for pointer, building in targets]
        # announced after this batch began: see Writer.merge
        valid: dict[int, bool] = {pointer.generation: pointer.generation not in self._lost
                                  for pointer, _, key in mine if key in self.layouts}
        for k, shard in list(self._bitmaps):
            bitmap = self._bitmaps.pop((k, shard))
            for pointer, building, key in mine:
                if key == k and valid[pointer.generation]:
                    valid[pointer.generation] = store.merge_bits(pointer, shard, bitmap, building=building, sync=sync)
            del bitmap
        self._dense_bytes = 0
        self._write_offsets(store, mine, valid, sync)
        return valid

    def _write_offsets(self, store: ShardStore, mine: list, valid: dict[int, bool], sync: bool) -> None:
        """Each shard's gathered offsets, let go as written: the dense ones merged as a bitmap
        (built a slice at a time), the sparse ones of a layout in one ``write_bits`` per target."""
        import numpy as np

        sparse: dict[tuple, dict[int, object]] = {}
        for k, shard in list(self._offsets):
            offs = np.concatenate(self._offsets.pop((k, shard)))
            if len(offs) * BYTES_PER_OFFSET < self.layouts[k].bits_bytes:
                sparse.setdefault(k, {})[shard] = offs
                continue
            for pointer, building, key in mine:
                if key == k and valid[pointer.generation]:
                    valid[pointer.generation] = store.merge_offsets(pointer, shard, offs, building=building,
                                                                    sync=sync)
            del offs
        for k, by_shard in sparse.items():
            for pointer, building, key in mine:
                if key == k and valid[pointer.generation]:
                    valid[pointer.generation] = store.write_bits(pointer, by_shard, building=building, sync=sync)
        self._pending = 0


def _hash_key(layout: Layout) -> tuple:
    return (layout.shards, layout.num_slices, layout.bits_per_slice)


def _group(layout: Layout, numbers: list[str]) -> dict[int, list[int]]:
    by_shard: dict[int, list[int]] = {}
    for number in numbers:
        shard, offs = layout.offsets(number)
        lst = by_shard.get(shard)
        if lst is None:
            by_shard[shard] = offs
        else:
            lst += offs
    return by_shard


class BloomIndex:
    def __init__(self, *, config: BloomConfig, engine, store: ShardStore, gate: WriterGate, logger: logging.Logger):
        self.config = config
        self._engine = engine
        self._store = store
        self._gate = gate
        self._log = logger
        self._lock = threading.Lock()
        self._pointer: Pointer | None = None  # trusted generation; None = database mode
        self._generation: int | None = None  # last generation seen, trusted or not
        self._reason: str | None = "not checked yet"
        self._rebuilding = False  # a rebuild runs in this process
        self._announced = False  # a rebuild was announced in the store (any process), as of check_marker
        self._errors = 0
        self._breaker_until = 0.0
        self.needs_rebuild = False
        self._run_id: str | None = None  # the Redis server the trusted generation was checked on
        if isinstance(store, RedisStore):
            store.direct.on_connect = self._same_server

    def _same_server(self, conn) -> None:
        """A new lookup connection (after a reconnect, or a thread's first): refuse it when it
        reached another Redis server than the one the trusted generation was checked on — a
        replica promoted behind the same address may lack the newest bits. Refused, the exchange
        fails (the database answers) and the index waits for its next marker check."""
        expected = self._run_id
        if self._pointer is None or expected is None:
            return
        try:
            conn.send_command("INFO", "server")
            info = conn.read_response()
        except ResponseError:  # INFO refused: the marker check cannot see a restart either
            return
        text_ = info.decode() if isinstance(info, bytes) else str(info)
        run_id = next((line[7:].strip() for line in text_.splitlines() if line.startswith("run_id:")), None)
        if run_id is not None and run_id != expected:
            self._distrust(f"a lookup connection reached another Redis server (run_id {run_id[:8]}, "
                           f"checked on {expected[:8]})", rebuild=False)
            raise RedisConnectionError("another Redis server than the one the Bloom index was checked on")

    # --- lookups ---------------------------------------------------------------------------------
    def lookup(self, number: str) -> bool | None:
        probe = self.probe(number)
        if probe.command is None:
            return probe.result
        try:
            reply = self._store.direct.call(*probe.command)
        except Exception as exc:  # noqa: BLE001 - a store failure means "ask the database"
            return probe.failed(exc)
        return probe.answer(reply)

    def probe(self, number: str) -> "Probe":
        """The lookup of ``number`` in two halves, for a caller that sends the Redis command
        together with its own (the verify edge): ``command`` to send — None when the answer is
        known already (local shards, or database mode) and in ``result`` — then ``answer(reply)``."""
        pointer = self._pointer
        if pointer is None or self._breaker_until > time.monotonic():
            return Probe(self, number, pointer, None, None)
        shard, offs = pointer.layout.offsets(number)
        if isinstance(self._store, RedisStore):
            return Probe(self, number, pointer, self._store.probe_command(pointer.generation, shard, offs), None)
        try:
            result = self._store.probe(pointer.generation, shard, offs)
        except StaleShard as exc:
            result = self._after_stale(number, pointer, exc.generation)
        except Exception as exc:  # noqa: BLE001 - a store failure means "ask the database"
            self._failed("lookup", exc)
            result = None
        return Probe(self, number, pointer, None, result)

    def probe_many(self, numbers: list[str]) -> "BatchProbe":
        """:meth:`probe` for many numbers at once (a bulk verification), hashed together (numpy):
        on Redis one command per touched shard, for the caller to send in one exchange; on local
        shards answered in one pass over the mapped shards (each shard checked once). Should that
        pass meet anything unusual (a shard replaced, a failing store), each number is probed on
        its own, which settles it."""
        pointer = self._pointer
        if not numbers or pointer is None or self._breaker_until > time.monotonic():
            return BatchProbe(self, numbers, pointer, [], [None] * len(numbers) if numbers else [])
        shards, offsets = pointer.layout.offsets_many(numbers)
        if isinstance(self._store, RedisStore):
            return BatchProbe(self, numbers, pointer,
                              self._store.probe_batch_commands(pointer.generation, shards, offsets), None, shards)
        try:
            found = self._store.probe_batch(pointer.generation, shards, offsets)
        except Exception:  # noqa: BLE001 - StaleShard or a store failure: the single path knows what to do
            found = [self.probe(number).result for number in numbers]
        return BatchProbe(self, numbers, pointer, [], found)

    def _after_stale(self, number: str, seen: Pointer, found: int) -> bool | None:
        """A shard did not carry our generation: a switch happened (adopt it), one is under way
        (ask the database this once), or the store lost it (database mode until a rebuild)."""
        try:
            current = self._store.read_pointer()
            if current is not None and current.generation != seen.generation:
                with self._lock:
                    if self._pointer is seen:
                        self._trust(current)
                shard, offs = current.layout.offsets(number)
                try:
                    return self._store.probe(current.generation, shard, offs)
                except StaleShard:
                    return None
            if current is not None and found > current.generation:
                announced = self._store.read_announcement()
                if announced is not None and announced.generation == found:
                    return None
            self._distrust(f"shard of generation {seen.generation} missing or replaced (found {found})", rebuild=True)
        except Exception as exc:  # noqa: BLE001
            self._failed("lookup", exc)
        return None

    # --- writers ---------------------------------------------------------------------------------
    @contextmanager
    def writing(self, session) -> Iterator[Writer]:
        """Hold the shared writer gate for the caller's unit of work (commit inside the block)."""
        with self._gate.shared(session):
            yield Writer(self)

    def _write_targets(self) -> list[tuple[Pointer, bool]]:
        targets = []
        current = self._store.read_pointer()
        if current is not None:
            targets.append((current, False))
        announced = self._store.read_announcement()
        if announced is not None and (current is None or announced.generation != current.generation):
            targets.append((announced, True))
        return targets

    # --- trust -----------------------------------------------------------------------------------
    def check_marker(self, newest_batch_id: int | None) -> None:
        """Trust the store only when its pointer, shard headers and newest-batch marker are intact
        and the marker has reached the database's newest batch (``newest_batch_id``, None when the
        registry has no batch). On success the Redis store records its ``run_id`` with the marker,
        for :meth:`check_marker_without_database`."""
        self._check(newest_batch_id, database=True)

    def check_marker_without_database(self) -> None:
        """The marker check while the database is unreachable (a worker started during an outage).

        Trusts the store only where it cannot have lost a write since a database-backed check:
        shard files on this host (written and made durable before any row commits), or a Redis
        whose ``run_id`` is the one recorded by the last database-backed check of this generation
        (a restarted or restored Redis has another). Negatives then answer from the index; anything
        else still needs the database. Never trusts a generation this process's database-backed
        check found wanting: only a rebuild restores that one. Failing, it leaves the index in
        database mode without asking for a rebuild (one could not run now); the next
        database-backed check decides."""
        self._check(None, database=False)

    def _check(self, newest_batch_id: int | None, *, database: bool) -> None:
        try:
            # read before anything else: a restart after this leaves a record no server matches
            run_id = self._store.run_id() if database else None
            pointer = self._store.read_pointer()
            if pointer is None and database and newest_batch_id is None:
                pointer = self._initialize()
            if pointer is None:
                self._distrust("no generation in the store", rebuild=database)
                return
            if not database and self.needs_rebuild and pointer.generation == self._generation:
                self._distrust(self._reason or f"generation {pointer.generation} awaits a rebuild", rebuild=False)
                return
            self._generation = pointer.generation
            self._announced = self._store.read_announcement() is not None
            marker = self._store.read_marker(pointer.generation)
            if marker is None:
                self._distrust(f"marker of generation {pointer.generation} missing", rebuild=database)
                return
            if database:
                if newest_batch_id is not None and marker < newest_batch_id:
                    self._distrust(f"marker {marker} behind newest batch {newest_batch_id}", rebuild=True)
                    return
            else:
                lost = self._store.lost_writes_since_check(pointer.generation, marker)
                if lost is not None:
                    self._distrust(f"database unreachable and {lost}", rebuild=False)
                    return
            bad = [g for g in self._store.header_generations(pointer) if g != pointer.generation]
            if bad:
                announced = self._store.read_announcement()
                switching = announced is not None and all(g == announced.generation for g in bad)
                if switching and self._store.rebuild_running():
                    self._distrust("generation switch under way", rebuild=False)
                else:
                    self._distrust(f"shards of generation {pointer.generation} missing or replaced",
                                   rebuild=database)
                return
            if database and run_id is not None:
                self._store.record_checked(pointer.generation, run_id, marker)
            self._breaker_until = 0.0
            with self._lock:
                self._trust(pointer)
                self._run_id = run_id if database else self._store.run_id()
        except Exception as exc:  # noqa: BLE001 - never raise into the app's poller
            self._failed("check_marker", exc)
            self._distrust(f"store unreachable ({exc.__class__.__name__})", rebuild=False)

    def _initialize(self) -> Pointer | None:
        """Create an empty first generation — only while the registry has no batch (checked again
        under the exclusive writer gate, so no writer can slip in between)."""
        try:
            with self._store.rebuild_lock(), self._gate.exclusive():
                pointer = self._store.read_pointer()
                if pointer is not None:
                    return pointer
                with self._engine.connect() as conn:
                    if conn.execute(text("SELECT max(id) FROM batches")).scalar() is not None:
                        return None
                layout = Layout.for_capacity(self.config.capacity, self.config.error_rate, self.config.shards)
                pointer = Pointer(_new_generation(None, None), layout)
                self._store.create_generation(pointer)
                self._store.switch(pointer, None)
                self._log.info("bloom: created empty generation %s (%s shards)", pointer.generation, layout.shards)
                return pointer
        except RebuildInProgress:
            return None

    def _trust(self, pointer: Pointer) -> None:
        self._pointer = pointer
        self._generation = pointer.generation
        self._reason = None
        self.needs_rebuild = False

    def _distrust(self, reason: str, *, rebuild: bool) -> None:
        with self._lock:
            if self._pointer is not None or reason != self._reason:
                self._log.warning("bloom: database mode: %s", reason)
            self._pointer = None
            self._reason = reason
            if rebuild:
                self.needs_rebuild = True

    def _failed(self, what: str, exc: Exception, *, breaker: bool = True) -> None:
        self._errors += 1
        if breaker:
            if self._breaker_until <= time.monotonic():
                self._log.warning("bloom: %s failed (%s: %s); asking the database for %.0f s",
                                  what, exc.__class__.__name__, exc, BREAKER_SECONDS)
            self._breaker_until = time.monotonic() + BREAKER_SECONDS
        else:
            self._log.error("bloom: %s failed (%s: %s)", what, exc.__class__.__name__, exc)

    # --- rebuild ---------------------------------------------------------------------------------
    def rebuild(self, *, capacity: int | None = None) -> dict:
        """Build a new generation from the database and switch to it; lookups keep answering."""
        started = time.monotonic()
        store = self._store
        run_id = store.run_id()  # before the snapshot: see _check
        with store.rebuild_lock():
            with self._engine.connect() as conn:
                rows = conn.execute(text("SELECT count(*) FROM report_numbers")).scalar() or 0
            cap = max(self.config.capacity, capacity or 0, 2 * rows)
            layout = Layout.for_capacity(cap, self.config.error_rate, self.config.shards)
            old = store.read_pointer()
            stale = store.read_announcement()
            if stale is not None:  # left by a rebuild that died
                store.clear_announcement()
                store.discard_generation(stale)
            if isinstance(store, LocalStore):
                store.discard_stale({old.generation} if old else set())
            new = Pointer(_new_generation(old, stale), layout)
            store.create_generation(new)
            self._rebuilding = True
            try:
                store.announce(new)
                self._gate.barrier()  # every writer that might have missed the announcement has committed
                scanned, newest = self._load_snapshot(new)
                store.advance_marker(new.generation, newest or 0)
                with self._gate.exclusive():
                    store.switch(new, old)
            except BaseException:
                try:
                    store.clear_announcement()
                    store.discard_generation(new)
                except Exception:  # noqa: BLE001
                    self._log.exception("bloom: cleaning up a failed rebuild")
                raise
            finally:
                self._rebuilding = False
            if run_id is not None:  # the snapshot was a database-backed check of the new generation
                try:
                    store.record_checked(new.generation, run_id, newest or 0)
                except Exception as exc:  # noqa: BLE001 - the next marker check records it
                    self._failed("record_checked", exc, breaker=False)
            self._breaker_until = 0.0
            self._announced = False
            with self._lock:
                self._trust(new)
                self._run_id = run_id
        seconds = round(time.monotonic() - started, 3)
        self._log.info("bloom: rebuilt generation %s: %s rows, capacity %s, %s shards, %.1f s",
                       new.generation, scanned, cap, layout.shards, seconds)
        return {"rows": scanned, "capacity": cap, "shards": layout.shards, "seconds": seconds,
                "generation": new.generation}

    def _load_snapshot(self, pointer: Pointer) -> tuple[int, int | None]:
        """Set the bits of every registered number in the generation being built: each shard's
        bitmap made here (numbers hashed with numpy) and merged into the store with one OR per
        shard — the import's per-shard merge (:class:`BatchBits`), not offset by offset (which
        went at ~25,000 numbers/s on PostgreSQL + Redis: 18 hours at 16 亿). The bitmaps of one pass
        stay within ``BLOOM_REBUILD_MEMORY_MB`` (default :data:`REBUILD_MEMORY`: one pass up to ~250 M
        numbers of capacity at 0.1 %; beyond, more passes over the table, each hashing only the
        numbers of its own shards)."""
        import numpy as np

        layout = pointer.layout
        per_pass = max(1, (self.config.rebuild_memory or REBUILD_MEMORY) // layout.bits_bytes)
        scanned = 0
        with self._engine.connect() as conn:
            newest = conn.execute(text("SELECT max(id) FROM batches")).scalar()
            conn.rollback()
        for first in range(0, layout.shards, per_pass):
            wanted = range(first, min(layout.shards, first + per_pass))
            bitmaps = {shard: np.zeros(layout.bits_bytes, dtype=np.uint8) for shard in wanted}
            passed = 0
            with self._engine.connect() as conn:
                # streamed (a server-side cursor on PostgreSQL): partitions() needs its size, without
                # it the whole table arrives as one partition (0.7 GB of RSS at 3 M numbers)
                result = conn.execution_options(yield_per=REBUILD_PART).execute(text("SELECT number FROM report_numbers"))
                for part in result.partitions(REBUILD_PART):
                    numbers = [row[0] for row in part]
                    passed += len(numbers)
                    if len(wanted) < layout.shards:  # hash only the numbers of this pass's shards
                        numbers = [n for n in numbers if layout.shard_of(n) in wanted]
                    if not numbers:
                        continue
                    shards, offsets = layout.offsets_many(numbers)
                    for shard, bitmap in bitmaps.items():
                        set_bits(bitmap, offsets[shards == shard].ravel() if layout.shards > 1 else offsets.ravel())
                conn.rollback()
            scanned = max(scanned, passed)
            for shard, bitmap in bitmaps.items():
                if not self._store.merge_bits(pointer, shard, bitmap, building=True, sync=False):
                    raise BloomStoreError(f"generation {pointer.generation} vanished during the rebuild")
            del bitmaps
        return scanned, newest

    # --- reports ---------------------------------------------------------------------------------
    def check(self) -> dict:
        """Figures for `bloom check`, and every registered number whose bits are not all set."""
        store = self._store
        pointer = store.read_pointer()
        with self._engine.connect() as conn:
            items = conn.execute(text("SELECT count(*) FROM report_numbers")).scalar() or 0
            distinct = conn.execute(text("SELECT count(DISTINCT number) FROM report_numbers")).scalar() or 0
            missing: list[str] = []
            missing_count = 0
            if pointer is not None:
                result = conn.execution_options(yield_per=CHUNK).execute(text("SELECT number FROM report_numbers"))
                for part in result.partitions(CHUNK):
                    numbers = [row[0] for row in part]
                    found = store.probe_many(pointer.generation, [pointer.layout.offsets(n) for n in numbers])
                    for number, ok in zip(numbers, found):
                        if not ok:
                            missing_count += 1
                            if len(missing) < 100:
                                missing.append(number)
            conn.rollback()
        report = {"items": items, "distinct_numbers": distinct, "store": store.kind,
                  "mode": "bloom" if self._pointer is not None else "database", "reason": self._reason,
                  "missing": missing, "missing_count": missing_count}
        if pointer is None:
            return report | {"generation": None, "capacity": None, "shards": None, "fill_ratio": None,
                             "estimated_false_positive_rate": None}
        layout = pointer.layout
        fill = store.bit_count(pointer) / (layout.num_bits * layout.shards)
        return report | {"generation": pointer.generation, "capacity": layout.capacity, "shards": layout.shards,
                         "error_rate": layout.error_rate, "fill_ratio": fill,
                         "estimated_false_positive_rate": fill ** layout.num_slices}

    def snapshot_bits(self, newest_batch_id: int | None) -> tuple[Pointer, list[bytes]]:
        """The trusted generation's bits, shard by shard (headers stripped), for an offline
        snapshot (registry/bloom/snapshot.py). Raises :class:`SnapshotUnavailable` unless the index
        is trusted, every shard still carries the generation, and the newest-batch marker, read
        after the bits, has reached ``newest_batch_id`` (the database's newest batch, read before
        them): then every batch committed before the read is in the bits."""
        pointer = self._pointer
        if pointer is None or self._breaker_until > time.monotonic():
            raise SnapshotUnavailable(f"the Bloom index is not trusted now ({self._reason or 'store errors'})")
        try:
            shards = [shard_bits(self._store.shard_bytes(pointer, shard), pointer.layout, pointer.generation)
                      for shard in range(pointer.layout.shards)]
            marker = self._store.read_marker(pointer.generation)
            current = self._store.read_pointer()
        except SnapshotUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreachable store: no snapshot now
            raise SnapshotUnavailable(f"the Bloom store failed ({exc.__class__.__name__})") from exc
        if current is None or current.generation != pointer.generation:
            raise SnapshotUnavailable("the generation changed while the bits were read")
        if newest_batch_id is not None and (marker is None or marker < newest_batch_id):
            raise SnapshotUnavailable(f"marker {marker} behind the newest batch {newest_batch_id}")
        return pointer, shards

    def status(self) -> dict:
        """Cheap figures for /readyz; no store round trip."""
        breaker = self._breaker_until > time.monotonic()
        mode = "bloom" if self._pointer is not None and not breaker else "database"
        reason = self._reason or ("store errors; asking the database" if breaker else None)
        rebuilding = self._rebuilding or self._announced
        return {"store": self._store.kind, "mode": mode, "generation": self._generation,
                "rebuilding": rebuilding, "degraded": mode == "database" or rebuilding,
                "reason": reason, "errors": self._errors}

    def close(self) -> None:
        self._pointer = None
        self._reason = "closed"
        self._store.close()


def _new_generation(old: Pointer | None, stale: Pointer | None) -> int:
    """Microseconds since the epoch, above any generation seen (fits Redis's i64)."""
    floor = max(old.generation if old else 0, stale.generation if stale else 0)
    return max(time.time_ns() // 1000, floor + 1)

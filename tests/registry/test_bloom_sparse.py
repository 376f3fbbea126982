"""A big batch's sparse bits (a registry of many shards: at national capacity a 1 M-number file sets
one bit per 3.4 KB of each shard): written as packed ``BITFIELD`` commands on Redis
(``RedisStore.write_bits``), spilled on the way once the gathered offsets pass their budget
(``Writer.spill``), dense ones merged as a bitmap built a slice at a time (``merge_offsets``) —
exactly the bits that setting them one by one gives, on both stores; a shard lost under a write
is noticed and leaves no stray key; a store failing in the middle of a batch rolls it back."""
from __future__ import annotations

import numpy as np
import pytest
from hiredis import pack_command
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select

from registry.bloom import BloomStoreError
from registry.bloom import index as index_module
from registry.bloom import stores as stores_module
from registry.bloom.layout import HEADER_SIZE, Layout, Pointer
from registry.bloom.stores import bit_writes
from registry.numbers.quarters import Quarter
from registry.registration import service as service_module
from registry.registration.models import Batch, ReportNumber
from registry.registration.service import RegistrationService
from tests.registry.test_bloom_batch import expected_shards, stored_shards
from tests.registry.test_bloom_index import (make_institution, newest_batch, numbers, open_index, register,  # noqa: F401
                                             session_factory, store_kind)

__all__ = ["open_index", "session_factory", "store_kind"]


def _opened(open_index, shards: int):
    """A checked index of ``shards`` shards (capacity 20,000), its store and current pointer."""
    index = open_index(capacity=20_000, shards=shards)
    index.check_marker(None)
    return index, index._store, index._store.read_pointer()


def test_bit_writes_are_packed_as_the_redis_protocol_has_them():
    bits = np.array([512, 9, 10, 99, 100, 4_294_967_295, 1_000_000_000, 999_999_999, 28_765_432, 513, 0],
                    dtype=np.uint64)
    command = bit_writes("rnr:bloom:g17:s0", bits)
    widths = [len(str(b)) for b in bits.tolist()]
    ordered = [b for _, b in sorted(zip(widths, bits.tolist()), key=lambda wb: wb[0])]  # grouped by digits
    assert command == pack_command(("BITFIELD", "rnr:bloom:g17:s0", "GET", "i64", 0,
                                    *[a for b in ordered for a in ("SET", "u1", b, 1)]))


@pytest.mark.parametrize("store_kind", ["redis"], indirect=True)
def test_write_bits_sets_exactly_the_offsets_in_many_commands(open_index, monkeypatch):
    monkeypatch.setattr(stores_module, "_OPS_PER_COMMAND", 7)
    monkeypatch.setattr(stores_module, "_OPS_PER_EXCHANGE", 20)
    index, store, pointer = _opened(open_index, 3)
    layout = pointer.layout
    values = numbers("W", 700)
    by_shard: dict[int, list[int]] = {}
    for value in values:
        shard, offs = layout.offsets(value)
        by_shard.setdefault(shard, []).extend(offs)
    half = {shard: offs for shard, offs in by_shard.items() if shard != 2}
    assert store.write_bits(pointer, half, building=False)  # lists (an API call's)
    assert store.write_bits(pointer, {2: np.array(by_shard[2], dtype=np.uint32)}, building=False)  # numpy
    assert stored_shards(index) == expected_shards(layout, values)
    assert all(index.lookup(v) is True for v in values)


@pytest.mark.parametrize("store_kind", ["redis"], indirect=True)
def test_a_write_into_a_lost_shard_says_so_and_leaves_no_key(open_index):
    index, store, pointer = _opened(open_index, 2)
    store.client.delete(store.key(pointer.generation, 1))
    assert not store.write_bits(pointer, {0: [5, 6], 1: [7, 8_000]}, building=False)
    assert not store.client.exists(store.key(pointer.generation, 1))  # the BITFIELD's key went again
    assert store.client.getbit(store.key(pointer.generation, 0), HEADER_SIZE * 8 + 5) == 1
    gone = Pointer(pointer.generation + 1, pointer.layout)  # a generation discarded under the writer
    assert not store.write_bits(gone, {0: [1]}, building=True)
    assert not store.client.exists(store.key(gone.generation, 0))


def test_merge_offsets_in_slices_equals_bits_set_one_by_one(open_index, monkeypatch):
    monkeypatch.setattr(stores_module, "MERGE_SLICE", 1000)  # several slices, some without a bit
    monkeypatch.setattr(stores_module, "SET_BITS_SLICE", 333)
    index, store, pointer = _opened(open_index, 2)
    layout = pointer.layout
    values = [v for v in numbers("M", 400) if layout.shard_of(v) == 0]
    offs = np.array([o for v in values for o in layout.offsets(v)[1]], dtype=np.uint32)
    assert store.merge_offsets(pointer, 0, offs, building=False)
    assert stored_shards(index) == expected_shards(layout, values)


@pytest.mark.parametrize("dense_budget, bytes_per_offset", [
    (0, 0),  # every shard sparse: spilled as offsets
    (0, 10**9),  # every shard dense but past the bitmaps' budget: spilled as bitmaps built in slices
    (Layout.for_capacity(20_000, 0.001, 3).bits_bytes, 64),  # one shard's bitmap gathered, the others spilled
], ids=["sparse", "dense-spilled", "mixed"])
def test_spilled_batch_equals_bits_set_one_by_one(open_index, session_factory, monkeypatch, dense_budget,
                                                  bytes_per_offset):
    """A file registered through the service with a small offsets budget: the bits are spilled
    several times while the rows load, then merged; the same bits as one by one, and the index
    stays trusted."""
    monkeypatch.setattr(index_module, "DENSE_BUDGET", dense_budget)
    monkeypatch.setattr(index_module, "BYTES_PER_OFFSET", bytes_per_offset)
    monkeypatch.setattr(index_module, "OFFSETS_BUDGET", 9_000)
    monkeypatch.setattr(index_module, "MANY", 100)
    monkeypatch.setattr(service_module, "CHUNK", 500)
    index = open_index(capacity=20_000, shards=3)
    index.check_marker(None)
    spills = []
    writer_spill = index_module.Writer.spill
    monkeypatch.setattr(index_module.Writer, "spill", lambda self, g: (spills.append(1), writer_spill(self, g)))
    earlier = numbers("OLD", 300)
    batch = numbers("SPILL", 6000)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, earlier)
    registration = RegistrationService(sessions=session_factory, bloom=index)
    receipt = registration.register(institution_id=institution_id, quarter=Quarter(2026, 3), numbers=iter(batch),
                                    sha256="d" * 64)
    assert receipt.accepted == len(batch)
    assert len(spills) >= 3
    layout = index._store.read_pointer().layout
    assert stored_shards(index) == expected_shards(layout, earlier + batch)
    index.check_marker(newest_batch(index._engine))
    assert index.status()["mode"] == "bloom"
    assert all(index.lookup(n) is True for n in earlier + batch)


def test_a_shard_lost_before_a_spill_is_noticed_at_the_merge(open_index, session_factory, store_kind, tmp_path,
                                                              monkeypatch):
    import os

    monkeypatch.setattr(index_module, "DENSE_BUDGET", 0)
    index = open_index(capacity=20_000, shards=2)
    index.check_marker(None)
    pointer = index._store.read_pointer()
    gathered = index_module.BatchBits([(pointer, False)])
    gathered.add(numbers("LOSTSPILL", 3000))
    if store_kind == "redis":
        index._store.client.delete(index._store.key(pointer.generation, 1))
    else:
        os.unlink(tmp_path / "bloom" / "shard-001.bin")
    gathered.spill(index._store, [(pointer, False)], sync=True)
    gathered.add(numbers("AFTER", 100))
    assert gathered.write(index._store, [(pointer, False)], sync=True) == {pointer.generation: False}


def test_a_store_failing_mid_batch_rolls_the_batch_back(open_index, session_factory, store_kind, monkeypatch):
    """The store fails at the second spill of a big file (a dropped Redis connection, a full
    disk): the registration raises, no row and no batch commit, the marker stays where it was and
    the index stays trusted; the same file registered afterwards is found number by number."""
    monkeypatch.setattr(index_module, "DENSE_BUDGET", 0)
    monkeypatch.setattr(index_module, "BYTES_PER_OFFSET", 0)
    monkeypatch.setattr(index_module, "OFFSETS_BUDGET", 9_000)
    monkeypatch.setattr(index_module, "MANY", 100)
    monkeypatch.setattr(service_module, "CHUNK", 500)
    index = open_index(capacity=20_000, shards=3)
    index.check_marker(None)
    store = index._store
    calls = []
    write_bits = store.write_bits

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RedisConnectionError("Connection reset by peer") if store_kind == "redis" else OSError(28, "No space left")
        return write_bits(*args, **kwargs)

    monkeypatch.setattr(store, "write_bits", failing)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
    marker = store.read_marker(store.read_pointer().generation)
    batch = numbers("FAIL", 6000)
    registration = RegistrationService(sessions=session_factory, bloom=index)
    with pytest.raises(BloomStoreError):
        registration.register(institution_id=institution_id, quarter=Quarter(2026, 3), numbers=iter(batch),
                              sha256="e" * 64)
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ReportNumber)) == 0
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    assert store.read_marker(store.read_pointer().generation) == marker
    index.check_marker(newest_batch(index._engine))
    assert index.status()["mode"] == "bloom"

    monkeypatch.setattr(store, "write_bits", write_bits)
    receipt = registration.register(institution_id=institution_id, quarter=Quarter(2026, 3), numbers=iter(batch),
                                    sha256="e" * 64)
    assert receipt.accepted == len(batch)
    index.check_marker(newest_batch(index._engine))
    assert index.status()["mode"] == "bloom"
    assert all(index.lookup(n) is True for n in batch)


def test_national_layout_offsets_stay_below_redis_bit_limit():
    """At national capacity (64 shards of 64 MiB) every offset a write sends, header included,
    fits the u32 the packer writes."""
    layout = Layout.for_capacity(2_300_000_000)
    assert layout.shards >= 60
    assert HEADER_SIZE * 8 + layout.num_bits < 2**32

"""The shard layout against pybloom-live: same sizes, same bits, and one byte format for both stores."""
from __future__ import annotations

import math

import pytest
from pybloom_live import BloomFilter

from registry.bloom import Layout, LocalStore, Pointer, RedisStore, bits_from_bloomfilter, bloomfilter_from_bits
from registry.bloom.layout import HEADER_SIZE, MAX_SHARD_BITS, parse_header


def numbers(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(n)]


def test_sizes_match_pybloom():
    layout = Layout.for_capacity(200_000, 0.001, shards=4)
    bf = BloomFilter(layout.shard_capacity, 0.001)
    assert (layout.num_slices, layout.bits_per_slice) == (bf.num_slices, bf.bits_per_slice)


def test_auto_shards_stay_within_64_mib_and_redis_limits():
    assert Layout.for_capacity(1000).shards == 1
    big = Layout.for_capacity(500_000_000)
    assert big.shards > 1 and big.shard_bytes <= 64 * 1024 * 1024 + HEADER_SIZE
    assert big.shard_bytes >= 8 * 1024 * 1024
    forced = Layout.for_capacity(3_000_000_000, shards=1)
    assert forced.shards > 1 and forced.num_bits <= MAX_SHARD_BITS


def test_bits_equal_bloomfilter_add():
    layout = Layout.for_capacity(5000, 0.001, shards=1)
    keys = numbers("2020", 4000) + ["检测-2021-0001", "(A)[B]_c.#+/9"]
    ours = bytearray(layout.bits_bytes)
    for key in keys:
        shard, offs = layout.offsets(key)
        assert shard == 0
        for o in offs:
            ours[o >> 3] |= 0x80 >> (o & 7)
    bf = BloomFilter(layout.shard_capacity, 0.001)
    for key in keys:
        bf.add(key)
    assert bytes(ours) == bits_from_bloomfilter(bf)
    back = bloomfilter_from_bits(layout, bytes(ours))
    assert back.bitarray == bf.bitarray
    assert all(key in back for key in keys)


def test_false_positive_rate_and_size_at_capacity():
    capacity, rate = 200_000, 0.001
    layout = Layout.for_capacity(capacity, rate, shards=4)
    shards = [bytearray(layout.bits_bytes) for _ in range(layout.shards)]
    for key in numbers("IN", capacity):
        shard, offs = layout.offsets(key)
        bits = shards[shard]
        for o in offs:
            bits[o >> 3] |= 0x80 >> (o & 7)

    def present(key):
        shard, offs = layout.offsets(key)
        bits = shards[shard]
        return all(bits[o >> 3] & (0x80 >> (o & 7)) for o in offs)

    false_positives = sum(present(key) for key in numbers("OUT", capacity))
    assert false_positives / capacity <= 1.2 * rate
    optimum = -math.log(rate) / math.log(2) ** 2
    assert layout.num_bits * layout.shards / capacity <= 1.05 * optimum


def test_shard_bytes_identical_in_both_stores_and_movable(tmp_path, redis_client):
    layout = Layout.for_capacity(20_000, 0.001, shards=3)
    pointer = Pointer(12345, layout)
    local, remote = LocalStore(tmp_path), RedisStore(redis_client)
    for store in (local, remote):
        store.create_generation(pointer)
        by_shard: dict[int, list[int]] = {}
        for key in numbers("MV", 5000):
            shard, offs = layout.offsets(key)
            by_shard.setdefault(shard, []).extend(offs)
        assert store.write_bits(pointer, by_shard, building=True)
        store.switch(pointer, None)
    for shard in range(layout.shards):
        raw = local.shard_bytes(pointer, shard)
        assert len(raw) == layout.shard_bytes
        assert raw == remote.shard_bytes(pointer, shard)
        header = parse_header(raw)
        assert (header.generation, header.shard, header.shards) == (12345, shard, 3)

    # move: a filter copied from files into Redis answers the same
    moved = Pointer(777, layout)
    for shard in range(layout.shards):
        raw = bytearray(local.shard_bytes(pointer, shard))
        raw[:HEADER_SIZE] = layout.header(777, shard)
        redis_client.set(RedisStore.key(777, shard), bytes(raw))
    for key in numbers("MV", 5000):
        shard, offs = layout.offsets(key)
        assert remote.probe(moved.generation, shard, offs) is True
        assert local.probe(pointer.generation, shard, offs) is True


@pytest.mark.parametrize("num_slices, bits_per_slice", [
    (10, 57_500_000), (7, 1_000_003), (14, 40_000), (3, 60_000), (2, 3_000), (20, 2**33), (1, 17), (4, 70_000),
])
def test_offsets_equal_pybloom_hash_functions(num_slices, bits_per_slice):
    """The offsets are computed in one go from pybloom's own salts; they must equal what pybloom's
    generator yields, for every digest size and format pybloom picks."""
    from pybloom_live.pybloom import make_hashfuncs

    from registry.bloom.layout import _offsets_function

    reference = make_hashfuncs(num_slices, bits_per_slice)[0]
    fast = _offsets_function(num_slices, bits_per_slice)
    for key in ["WT2020-00000001", "（2020）沪检字第0123号", "", "A" * 64, "检测报告第0001号"]:
        expected = [i * bits_per_slice + h for i, h in enumerate(reference(key))]
        assert fast(key.encode("utf-8")) == expected

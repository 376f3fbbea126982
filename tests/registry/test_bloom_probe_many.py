"""The Bloom probes of a bulk verification (``BloomIndex.probe_many``): hashed together, one
``BITFIELD_RO`` per touched Redis shard (packed by numpy) or one pass over the mapped shards —
and the same answer, number by number, as probing each on its own, on both stores, also when a
shard was replaced under the batch and when the exchange fails."""
from __future__ import annotations

import numpy as np
import pytest
from hiredis import pack_command
from redis.exceptions import ConnectionError as RedisConnectionError, ResponseError

from registry.bloom.stores import bit_reads
from tests.registry.test_bloom_index import make_institution, numbers, open_index, register, session_factory, store_kind

__all__ = ["open_index", "session_factory", "store_kind"]

ODD = ["报告-1", "wt2020-00000001", "Ａ-１", "X" * 100]


def probe_many(index, values: list[str]) -> list[bool | None]:
    """What the bulk edge does with a batch: send its commands in one exchange, read the replies."""
    batch = index.probe_many(values)
    if not batch.commands:
        return batch.results
    return batch.answer(index._store.direct.exchange(batch.commands))


def registered_index(open_index, session_factory, values: list[str], **kwargs):
    index = open_index(**kwargs)
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, values)
    return index


@pytest.mark.parametrize("shards", [1, 3])
def test_a_batch_answers_as_each_number_probed_alone(open_index, session_factory, store_kind, shards):
    present = numbers("P", 1500)
    index = registered_index(open_index, session_factory, present + ODD[:2], shards=shards)
    asked = [v for pair in zip(present[:600], numbers("ABSENT", 600)) for v in pair] + ODD + present[:5]
    got = probe_many(index, asked)
    assert got == [index.lookup(v) for v in asked]
    assert got[:1200:2] == [True] * 600 and got[-5:] == [True] * 5 and got[-9:-7] == [True, True]
    assert got[1:1200:2].count(False) > 590  # absent numbers: at most the false-positive rate says maybe
    batch = index.probe_many(asked)
    if store_kind == "redis":  # one command per touched shard, nothing answered before the exchange
        assert len(batch.commands) == shards and batch.results is None
    else:  # answered in one pass over the mapped shards
        assert batch.commands == [] and len(batch.results) == len(asked)
    assert probe_many(index, []) == []


def test_a_shard_replaced_under_a_batch_is_settled_as_a_single_probe_would(open_index, session_factory, engine):
    present = numbers("R", 800)
    reader = registered_index(open_index, session_factory, present, shards=2)
    other = open_index(shards=2)
    other.check_marker(None)
    other.rebuild()  # a new generation: the reader's pointer names shards that are gone or replaced
    asked = present + numbers("GONE", 200)
    got = probe_many(reader, asked)
    assert False not in got[:800]  # never a false negative
    assert got == [reader.lookup(v) for v in asked]  # and the reader adopted the new generation
    assert got[:800] == [True] * 800


@pytest.mark.parametrize("store_kind", ["redis"], indirect=True)
def test_a_failed_exchange_or_error_reply_asks_the_database(open_index, session_factory, store_kind):
    index = registered_index(open_index, session_factory, numbers("F", 100), shards=2)
    batch = index.probe_many(numbers("F", 100))
    replies = index._store.direct.exchange(batch.commands)
    replies[0] = ResponseError("WRONGTYPE")  # an error in one command's place: its numbers only
    got = batch.answer(replies)
    assert None in got and False not in got and set(got) <= {True, None}
    assert index.status()["errors"] >= 1
    batch = numbers("F", 50)
    answered = index.probe_many(batch)  # the breaker is open: the database answers, nothing sent
    assert answered.commands == [] and answered.results == [None] * 50
    index._breaker_until = 0.0
    sent = index.probe_many(batch)
    assert sent.failed(RedisConnectionError("reset")) == [None] * 50


def test_bit_reads_are_packed_as_the_redis_protocol_has_them():
    bits = np.array([512, 9, 10, 99, 100, 4_294_967_295, 1_000_000_000, 999_999_999, 28_765_432, 513, 0],
                    dtype=np.uint64)
    command, order = bit_reads("rnr:bloom:g17:s0", bits)
    assert sorted(order.tolist()) == list(range(len(bits)))
    asked = [a for b in bits[order].tolist() for a in ("GET", "u1", b)]
    assert command == pack_command(("BITFIELD_RO", "rnr:bloom:g17:s0", "GET", "i64", 0, *asked))

"""A big batch's bits gathered per shard and merged once per touched shard (``BatchBits``;
``BITOP OR`` on Redis, one OR over the mapped shard locally): exactly the bits that setting
them offset by offset gives, on both stores, on every path (bitmaps, offsets past the budget sent
as a bitmap or one by one); and a writer killed between the merge and its commit loses nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from bitarray import bitarray

from registry.bloom import index as index_module
from registry.bloom.index import BatchBits
from registry.bloom.layout import HEADER_SIZE, Layout
from tests.registry.test_bloom_index import (ROOT, insert_numbers, make_batch, make_institution, newest_batch,
                                             numbers, open_index, register, session_factory, store_kind)  # noqa: F401

__all__ = ["open_index", "session_factory", "store_kind"]


def expected_shards(layout: Layout, values: list[str]) -> list[bytes]:
    """Each shard's filter bytes with the bits of ``values`` set one offset at a time (the
    per-number path: pybloom's offsets, most significant bit first)."""
    shards = [bitarray(layout.num_bits, endian="big") for _ in range(layout.shards)]
    for bits in shards:
        bits.setall(0)
    for value in values:
        shard, offsets = layout.offsets(value)
        for o in offsets:
            shards[shard][o] = 1
    return [bits.tobytes() for bits in shards]


def stored_shards(index) -> list[bytes]:
    pointer = index._store.read_pointer()
    return [index._store.shard_bytes(pointer, s)[HEADER_SIZE:HEADER_SIZE + pointer.layout.bits_bytes]
            for s in range(pointer.layout.shards)]


def test_many_offsets_equal_the_per_number_ones():
    values = numbers("V", 3000) + ["报告-1", "wt2020-00000001", ""]
    for capacity, rate, shards in [(20_000, 0.001, 3), (10_000_000, 0.001, 0), (10**9, 0.0001, 0), (100, 0.3, 1)]:
        layout = Layout.for_capacity(capacity, rate, shards)
        got_shards, got = layout.offsets_many(values)
        want = [layout.offsets(v) for v in values]
        assert got_shards.tolist() == [shard for shard, _ in want]
        assert got.tolist() == [offsets for _, offsets in want]


@pytest.mark.parametrize("budget, bytes_per_offset", [
    (index_module.DENSE_BUDGET, index_module.BYTES_PER_OFFSET),  # every shard a bitmap
    (0, 0),  # past the budget, few offsets: set one by one
    (0, 10**9),  # past the budget, many offsets: one bitmap per shard at the end
], ids=["bitmaps", "offsets", "late-bitmaps"])
def test_merged_bits_equal_bits_set_one_by_one(open_index, session_factory, monkeypatch, budget, bytes_per_offset):
    monkeypatch.setattr(index_module, "DENSE_BUDGET", budget)
    monkeypatch.setattr(index_module, "BYTES_PER_OFFSET", bytes_per_offset)
    index = open_index(capacity=20_000, shards=3)
    index.check_marker(None)
    earlier = numbers("OLD", 500)  # set number by number first: the merge ORs, never overwrites
    batch = numbers("BIG", 6000)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, earlier)
        with index.writing(session) as writer:
            batch_id = make_batch(session, institution_id)
            insert_numbers(session, batch, institution_id=institution_id, batch_id=batch_id)
            gathered = writer.gather()
            gathered.add(batch[:2500])
            gathered.add(batch[2500:])
            writer.merge(gathered, batch_id=batch_id)
            session.commit()
    layout = index._store.read_pointer().layout
    assert stored_shards(index) == expected_shards(layout, earlier + batch)
    index.check_marker(newest_batch(index._engine))
    assert index.status()["mode"] == "bloom"
    assert all(index.lookup(n) is True for n in earlier + batch)


def test_a_chunk_written_through_add_merges_per_shard(open_index, session_factory):
    """``Writer.add`` of a chunk of at least MANY numbers takes the merge; the bits are the same."""
    index = open_index(capacity=20_000, shards=2)
    index.check_marker(None)
    batch = numbers("ADD", index_module.MANY + 10)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, batch)
    assert stored_shards(index) == expected_shards(index._store.read_pointer().layout, batch)


def test_a_merge_into_a_lost_shard_says_so(open_index, session_factory, store_kind, tmp_path):
    index = open_index(capacity=20_000, shards=2)
    index.check_marker(None)
    pointer = index._store.read_pointer()
    gathered = BatchBits([(pointer, False)])
    gathered.add(numbers("LOST", 3000))
    if store_kind == "redis":
        index._store.client.delete(index._store.key(pointer.generation, 1))
    else:
        os.unlink(tmp_path / "bloom" / "shard-001.bin")
    assert gathered.write(index._store, [(pointer, False)], sync=True) == {pointer.generation: False}
    if store_kind == "redis":  # the temporary keys went with the refused merge
        assert not list(index._store.client.scan_iter("*:merge:*"))



@pytest.mark.parametrize("size", [50, index_module.MANY + 10])  # offset by offset, and merged per shard
def test_a_shard_lost_mid_batch_keeps_the_marker_back_through_the_last_add(open_index, session_factory, store_kind,
                                                                          tmp_path, size):
    """A writer that saw a shard lost never advances that generation's marker in the same unit of
    work, not even with the batch's closing empty add (``RegistrationService`` ends every batch
    with one): every other process then finds the marker behind the newest batch and asks the
    database, instead of trusting a shard that lacks the batch's bits."""
    index = open_index(capacity=20_000, shards=2)
    index.check_marker(None)
    pointer = index._store.read_pointer()
    before = index._store.read_marker(pointer.generation)
    with session_factory() as session:
        with index.writing(session) as writer:
            if store_kind == "redis":
                index._store.client.delete(index._store.key(pointer.generation, 1))
            else:
                os.unlink(tmp_path / "bloom" / "shard-001.bin")
            writer.add(numbers("LOSTW", size), batch_id=7)
            writer.add((), batch_id=7)
    assert index._store.read_marker(pointer.generation) == before
    assert index.status()["mode"] == "database"


KILLED_AFTER_MERGE = r"""
import json, os, signal, sys
from pathlib import Path
import redis
from registry.bloom import BloomConfig, Writer, open_bloom_index
from registry.infra.db import make_engine, make_session_factory
from registry.numbers.quarters import Quarter
from registry.registration.service import RegistrationService
from registry.registration import service as service_module
from registry.bloom import index as index_module

args = json.loads(sys.argv[1])
service_module.CHUNK = 1000
index_module.MANY = 100
merge = Writer.merge

def merge_then_die(self, gathered, *, batch_id):
    merge(self, gathered, batch_id=batch_id)
    print("merged", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # after the bits, before the rows commit

Writer.merge = merge_then_die
engine = make_engine(args["database_url"])
client = redis.Redis.from_url(args["redis_url"], socket_timeout=5) if args["redis_url"] else None
index = open_bloom_index(config=BloomConfig(capacity=20_000, shards=2), engine=engine,
                         directory=Path(args["directory"]), redis=client)
registration = RegistrationService(sessions=make_session_factory(engine), bloom=index)
registration.register(institution_id=args["institution_id"], quarter=Quarter(2026, 3),
                      numbers=iter(args["numbers"]), sha256="c" * 64)
print("committed", flush=True)
"""


@pytest.mark.slow
def test_writer_killed_between_merge_and_commit_loses_nothing(open_index, session_factory, engine, store_kind,
                                                              tmp_path):
    """A registering process SIGKILLed right after its bits were merged, before its rows commit:
    no row of the batch; its bits stay (false positives only) and the marker is not behind the
    batches, so the index stays trusted; registering the same numbers again puts every one in
    the database and the index."""
    from sqlalchemy import func, select

    from registry.numbers.quarters import Quarter
    from registry.registration.models import Batch, ReportNumber
    from registry.registration.service import RegistrationService

    index = open_index(capacity=20_000, shards=2)
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
    batch = numbers("KILL", 5000)
    args = {"database_url": engine.url.render_as_string(hide_password=False),
            "redis_url": os.environ["TEST_REDIS_URL"] if store_kind == "redis" else "",
            "directory": str(tmp_path / "bloom"), "institution_id": institution_id, "numbers": batch}
    child = subprocess.run([sys.executable, "-c", KILLED_AFTER_MERGE, json.dumps(args)], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert child.stdout.split() == ["merged"]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(ReportNumber)) == 0
        assert session.scalar(select(func.count()).select_from(Batch)) == 0
    index.check_marker(newest_batch(engine))
    assert index.status()["mode"] == "bloom"
    assert all(index.lookup(n) is True for n in batch)  # set before the commit that never came

    registration = RegistrationService(sessions=session_factory, bloom=index)
    receipt = registration.register(institution_id=institution_id, quarter=Quarter(2026, 3), numbers=iter(batch),
                                    sha256="c" * 64)
    assert receipt.accepted == len(batch) and not receipt.repeated
    index.check_marker(newest_batch(engine))
    report = index.check()
    assert report["mode"] == "bloom" and report["missing_count"] == 0 and report["items"] == len(batch)
    assert all(index.lookup(n) is True for n in batch)


def test_a_merge_key_shares_its_shard_key_slot():
    """On Redis Cluster the merge script touches the shard's key and the temporary key: they must
    hash to one slot (the shard key is the temporary key's hash tag)."""
    from redis.crc import key_slot

    from registry.bloom.stores import RedisStore, merge_key

    for generation, shard in ((1, 0), (1796141487914007, 41), (7, 103)):
        shard_key = RedisStore.key(generation, shard)
        temp = merge_key(shard_key)
        assert temp != merge_key(shard_key)  # a new one each merge
        assert key_slot(temp.encode()) == key_slot(shard_key.encode())

"""BloomIndex on both stores and both databases: no false negatives (across processes, during
rebuilds), loss detection, the marker check, capacity growth and a failing Redis."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import insert, select, text

from registry.bloom import BloomConfig, BloomStoreError, RebuildInProgress, open_bloom_index
from registry.bloom.layout import HEADER_SIZE
from registry.infra.db import make_session_factory
from registry.institutions.models import Authority, Institution
from registry.registration.models import Batch, ReportNumber

ROOT = Path(__file__).resolve().parents[2]


# --- builders ----------------------------------------------------------------------------------
def make_institution(session) -> int:
    authority_id = session.scalar(select(Authority.id).order_by(Authority.id).limit(1))
    uscc = uuid.uuid4().hex[:18].upper()
    institution = Institution(uscc=uscc, name=f"机构{uscc}", name_key=f"机构{uscc}", review_authority_id=authority_id)
    session.add(institution)
    session.flush()
    return institution.id


def make_batch(session, institution_id: int) -> int:
    batch = Batch(institution_id=institution_id, quarter="2026Q4", source="api", sha256=uuid.uuid4().hex * 2)
    session.add(batch)
    session.flush()
    return batch.id


def insert_numbers(session, numbers: list[str], *, institution_id: int = 1, batch_id: int = 0) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    session.execute(insert(ReportNumber), [
        {"number": n, "institution_id": institution_id, "quarter": "2026Q4", "batch_id": batch_id, "registered_at": now}
        for n in numbers
    ])


def register(index, session, institution_id: int, numbers: list[str]) -> int:
    """Register ``numbers`` the way the app does: gate, rows, bits, commit inside the gate."""
    with index.writing(session) as writer:
        batch_id = make_batch(session, institution_id)
        insert_numbers(session, numbers, institution_id=institution_id, batch_id=batch_id)
        writer.add(iter(numbers), batch_id=batch_id)
        session.commit()
    return batch_id


def newest_batch(engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT max(id) FROM batches")).scalar()


def numbers(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:06d}" for i in range(n)]


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(params=["local", "redis"])
def store_kind(request):
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    return request.param


@pytest.fixture
def open_index(store_kind, engine, tmp_path):
    """Opens index objects over one shared store (each stands for a separate process)."""
    opened = []

    def _open(capacity: int = 20_000, shards: int = 2, *, redis_url: str | None = None, rebuild_memory: int = 0,
              **redis_kwargs):
        client = None
        if store_kind == "redis":
            redis_kwargs.setdefault("socket_timeout", 2)
            redis_kwargs.setdefault("socket_connect_timeout", 2)
            client = redis_lib.Redis.from_url(redis_url or os.environ["TEST_REDIS_URL"], **redis_kwargs)
        index = open_bloom_index(config=BloomConfig(capacity=capacity, shards=shards, rebuild_memory=rebuild_memory),
                                 engine=engine,
                                 directory=tmp_path / "bloom", redis=client)
        opened.append((index, client))
        return index

    yield _open
    for index, client in opened:
        index.close()
        if client is not None:
            client.close()


@pytest.fixture
def session_factory(engine):
    return make_session_factory(engine)


# --- tests -------------------------------------------------------------------------------------
def test_untrusted_until_checked_then_empty_generation(open_index):
    index = open_index()
    assert index.lookup("2020-0001") is None
    assert index.status()["mode"] == "database"
    index.check_marker(None)
    assert index.lookup("2020-0001") is False
    status = index.status()
    assert status["mode"] == "bloom" and status["generation"] and not status["degraded"]


def test_no_false_negatives_seen_from_another_index(open_index, session_factory, engine):
    writer_side, reader_side = open_index(), open_index()
    writer_side.check_marker(None)
    reader_side.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        registered = numbers("A", 3000)
        register(writer_side, session, institution_id, registered)
    assert all(reader_side.lookup(n) is True for n in registered)
    reader_side.check_marker(newest_batch(engine))
    assert all(reader_side.lookup(n) is True for n in registered)
    absent = sum(reader_side.lookup(n) for n in numbers("B", 3000))
    assert absent < 20  # false positives only, at well under capacity
    withdrawn = registered[0]
    with session_factory() as session:
        session.execute(text("UPDATE report_numbers SET withdrawn_at = registered_at WHERE number = :n"), {"n": withdrawn})
        session.commit()
    assert reader_side.lookup(withdrawn) is True


CHILD = r"""
import datetime as dt, json, sys, uuid
from pathlib import Path
import redis
from sqlalchemy import text
from registry.bloom import BloomConfig, open_bloom_index
from registry.infra.db import make_engine, make_session_factory

args = json.loads(sys.argv[1])
engine = make_engine(args["database_url"])
client = redis.Redis.from_url(args["redis_url"], socket_timeout=2) if args["redis_url"] else None
index = open_bloom_index(config=BloomConfig(capacity=20_000, shards=2), engine=engine,
                         directory=Path(args["directory"]), redis=client)
with make_session_factory(engine)() as session:
    for b in range(args["batches"]):
        batch_numbers = [f"P{b:03d}-{i:04d}" for i in range(args["per_batch"])]
        with index.writing(session) as writer:
            batch_id = session.execute(text(
                "INSERT INTO batches (institution_id, quarter, source, sha256, accepted, duplicates, rejected, late, created_at)"
                " VALUES (:i, '2026Q4', 'api', :s, 0, 0, 0, false, :now) RETURNING id"),
                {"i": args["institution_id"], "s": uuid.uuid4().hex * 2, "now": dt.datetime.now(dt.timezone.utc)}).scalar()
            session.execute(text(
                "INSERT INTO report_numbers (number, institution_id, quarter, batch_id, registered_at)"
                " VALUES (:n, :i, '2026Q4', :b, :now)"),
                [{"n": n, "i": args["institution_id"], "b": batch_id, "now": dt.datetime.now(dt.timezone.utc)}
                 for n in batch_numbers])
            writer.add(batch_numbers, batch_id=batch_id)
            session.commit()
        print(b, flush=True)
index.close()
engine.dispose()
"""


@pytest.mark.slow
def test_subprocess_writer_parent_reader(open_index, session_factory, engine, store_kind, tmp_path):
    reader = open_index()
    reader.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
    args = {
        "database_url": engine.url.render_as_string(hide_password=False),
        "redis_url": os.environ["TEST_REDIS_URL"] if store_kind == "redis" else "",
        "directory": str(tmp_path / "bloom"), "institution_id": institution_id, "batches": 8, "per_batch": 300,
    }
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in child.stdout:
        b = int(line)
        committed = [f"P{b:03d}-{i:04d}" for i in range(args["per_batch"])]
        assert all(reader.lookup(n) is True for n in committed)
        seen += 1
    assert child.wait(timeout=60) == 0, child.stderr.read()
    child.stderr.close()
    child.stdout.close()
    assert seen == args["batches"]
    reader.check_marker(newest_batch(engine))
    assert reader.status()["mode"] == "bloom"


def _lose_the_store(index, store_kind, tmp_path, redis_client=None):
    if store_kind == "redis":
        redis_client.flushdb()
        return
    directory = tmp_path / "bloom"
    shard = directory / "shard-000.bin"
    zeroed = directory / "zeroed.tmp"
    zeroed.write_bytes(b"\0" * shard.stat().st_size)
    os.rename(zeroed, shard)


def test_lost_store_is_noticed_and_rebuilt(open_index, session_factory, engine, store_kind, tmp_path, request):
    index = open_index()
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        registered = numbers("L", 2000)
        register(index, session, institution_id, registered)
    redis_client = request.getfixturevalue("redis_client") if store_kind == "redis" else None
    _lose_the_store(index, store_kind, tmp_path, redis_client)

    answers = [index.lookup(n) for n in registered]
    assert False not in answers
    assert None in answers
    assert index.needs_rebuild and index.status()["mode"] == "database"
    assert all(index.lookup(n) is None for n in registered)
    index.check_marker(newest_batch(engine))
    assert index.needs_rebuild

    figures = index.rebuild()
    assert figures["rows"] == len(registered)
    assert not index.needs_rebuild
    assert all(index.lookup(n) is True for n in registered)
    index.check_marker(newest_batch(engine))
    assert index.status()["mode"] == "bloom"
    report = index.check()
    assert report["missing"] == [] and report["missing_count"] == 0
    assert report["items"] == len(registered) and report["distinct_numbers"] == len(registered)
    assert 0 < report["fill_ratio"] < 1 and report["estimated_false_positive_rate"] < 0.001


@pytest.mark.parametrize("store_kind", ["local"], indirect=True)
def test_old_generation_file_put_back_is_not_trusted(open_index, session_factory, engine, store_kind, tmp_path):
    index = open_index(shards=1)
    index.check_marker(None)
    shard = tmp_path / "bloom" / "shard-000.bin"
    old_copy = tmp_path / "bloom" / "old.bin"
    old_copy.write_bytes(shard.read_bytes())
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, numbers("O", 500))
    index.rebuild()
    os.rename(old_copy, shard)
    assert index.lookup("O-000001") is None
    assert index.needs_rebuild


def test_marker_behind_newest_batch_means_database_mode(open_index, session_factory, engine):
    index = open_index()
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        batch_id = register(index, session, institution_id, numbers("M", 100))
        index.check_marker(newest_batch(engine))
        assert index.lookup("M-000001") is True
        # a batch committed without its bits (as when Redis loses its last second of writes)
        make_batch(session, institution_id)
        session.commit()
    index.check_marker(newest_batch(engine))
    assert newest_batch(engine) > batch_id
    assert index.lookup("M-000001") is None
    assert index.needs_rebuild and index.status()["degraded"]
    index.rebuild()
    index.check_marker(newest_batch(engine))
    assert index.status()["mode"] == "bloom" and index.lookup("M-000001") is True


def test_rebuild_while_writers_write(open_index, session_factory, engine):
    index = open_index(capacity=50_000)
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        batch_id = make_batch(session, institution_id)
        insert_numbers(session, numbers("PRE", 10_000), institution_id=institution_id, batch_id=batch_id)
        session.commit()

    committed: list[str] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def writer_thread():
        writer_index = open_index(capacity=50_000)
        try:
            with session_factory() as session:
                b = 0
                while not done.is_set() or b < 3:
                    batch = [f"W{b:04d}-{i:03d}" for i in range(100)]
                    register(writer_index, session, institution_id, batch)
                    committed.extend(batch)
                    b += 1
                    time.sleep(0.01)  # leave the rebuild some of the GIL
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=writer_thread)
    thread.start()
    try:
        while not committed and thread.is_alive():
            time.sleep(0.01)
        figures = index.rebuild()
    finally:
        done.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert figures["rows"] >= 10_000
    index.check_marker(newest_batch(engine))
    assert index.status()["mode"] == "bloom"
    assert all(index.lookup(n) is True for n in committed)
    assert index.check()["missing_count"] == 0  # every row, PRE-* included


def test_rebuild_grows_capacity(open_index, session_factory, engine):
    index = open_index(capacity=1000, shards=0)
    index.check_marker(None)
    before = index.check()
    with session_factory() as session:
        batch_id = make_batch(session, make_institution(session))
        insert_numbers(session, numbers("G", 5000), batch_id=batch_id)
        session.commit()
    figures = index.rebuild()
    assert figures["capacity"] == 10_000 and figures["generation"] > before["generation"]
    index.check_marker(newest_batch(engine))
    report = index.check()
    assert report["capacity"] == 10_000 and report["missing_count"] == 0
    assert report["estimated_false_positive_rate"] < 0.001
    assert all(index.lookup(n) is True for n in numbers("G", 5000))


def test_a_rebuild_in_several_passes_sets_the_same_bits_as_one(open_index, session_factory, engine):
    """Shard bitmaps are built per pass within BLOOM_REBUILD_MEMORY_MB: with room for one shard
    only, four shards take four passes over the table, and the bits are the same as one pass's."""
    with session_factory() as session:
        batch_id = make_batch(session, make_institution(session))
        insert_numbers(session, numbers("P", 6000), batch_id=batch_id)
        session.commit()
    bits = []
    for memory in (0, 1):  # the default (one pass), then one shard per pass
        index = open_index(capacity=12_000, shards=4, rebuild_memory=memory)
        figures = index.rebuild()
        assert figures["rows"] == 6000 and figures["shards"] == 4
        index.check_marker(newest_batch(engine))
        report = index.check()
        assert report["missing_count"] == 0 and report["mode"] == "bloom"
        pointer = index._store.read_pointer()
        bits.append([index._store.shard_bytes(pointer, shard)[HEADER_SIZE:] for shard in range(4)])
    assert bits[0] == bits[1] and all(any(shard) for shard in bits[0])


def test_only_one_rebuild_at_a_time(open_index, store_kind):
    index = open_index()
    index.check_marker(None)
    with index._store.rebuild_lock():
        with pytest.raises(RebuildInProgress):
            index.rebuild()


def test_sqlite_writer_gate_blocks_rebuild_barrier(open_index, session_factory, engine):
    """The barrier waits for a writer holding the gate (either backend)."""
    index = open_index()
    index.check_marker(None)
    released = threading.Event()
    finished = threading.Event()

    def barrier():
        index._gate.barrier()
        finished.set()

    with session_factory() as session:
        with index.writing(session):
            t = threading.Thread(target=barrier)
            t.start()
            assert not finished.wait(0.3)
            session.commit()
    released.set()
    assert finished.wait(10)
    t.join()


@pytest.mark.parametrize("store_kind", ["redis"], indirect=True)
def test_redis_timeout_and_down(open_index, store_kind, session_factory, redis_client):
    index = open_index(socket_timeout=0.2)
    index.check_marker(None)
    assert index.lookup("X-1") is False
    redis_client.execute_command("CLIENT", "PAUSE", 1000, "ALL")
    started = time.monotonic()
    assert index.lookup("X-1") is None
    assert time.monotonic() - started < 0.9
    started = time.monotonic()
    assert index.lookup("X-2") is None  # breaker open: no waiting
    assert time.monotonic() - started < 0.05
    status = index.status()
    assert status["errors"] >= 1 and status["degraded"]
    time.sleep(1.0)

    down = open_index(redis_url="redis://127.0.0.1:6390/15", socket_timeout=0.2, socket_connect_timeout=0.2)
    started = time.monotonic()
    down.check_marker(None)
    assert down.lookup("X-1") is None
    assert time.monotonic() - started < 1.0
    assert down.status()["mode"] == "database" and down.status()["errors"] >= 1
    with session_factory() as session:
        with pytest.raises(BloomStoreError):
            with down.writing(session) as writer:
                writer.add(["X-3"], batch_id=1)
        session.rollback()


def test_rebuild_waits_for_a_writer_that_began_before_its_announcement(open_index, session_factory, engine):
    index = open_index()
    index.check_marker(None)
    early = numbers("E", 300)
    outcome: dict = {}
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        with index.writing(session) as writer:
            batch_id = make_batch(session, institution_id)
            insert_numbers(session, early, institution_id=institution_id, batch_id=batch_id)
            writer.add(early, batch_id=batch_id)  # no announcement yet: the old generation only
            rebuilder = threading.Thread(target=lambda: outcome.update(index.rebuild()))
            rebuilder.start()
            deadline = time.monotonic() + 10
            while index._store.read_announcement() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert index._store.read_announcement() is not None
            time.sleep(0.2)
            assert rebuilder.is_alive()  # held at the barrier by this uncommitted writer
            session.commit()
    rebuilder.join(timeout=30)
    assert outcome["rows"] == len(early)
    index.check_marker(newest_batch(engine))
    assert index.status()["mode"] == "bloom"
    assert all(index.lookup(n) is True for n in early)


# --- trust without the database (a process started while the database is down) ------------------
def test_trusted_without_database_after_a_database_backed_check(open_index, session_factory, engine):
    checked = open_index()
    checked.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        registered = numbers("ND", 300)
        register(checked, session, institution_id, registered)
    checked.check_marker(newest_batch(engine))  # the database-backed check (records Redis's run_id)

    started = open_index()  # a process started while the database is down
    assert started.lookup("ND-000001") is None
    started.check_marker_without_database()
    assert started.status()["mode"] == "bloom"
    assert all(started.lookup(n) is True for n in registered)
    assert started.lookup("NEVER-REGISTERED") is False
    assert not started.needs_rebuild


def test_trusted_without_database_after_a_rebuild(open_index, session_factory, engine):
    index = open_index()
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, numbers("RB", 50))
    index.rebuild()  # its snapshot is a database-backed check of the new generation
    started = open_index()
    started.check_marker_without_database()
    assert started.status()["mode"] == "bloom" and started.lookup("RB-000001") is True


@pytest.mark.parametrize("store_kind", ["redis"], indirect=True)
def test_redis_never_checked_against_the_database_is_not_trusted_without_it(open_index, store_kind, redis_client):
    first = open_index()
    first.check_marker(None)
    for key in redis_client.scan_iter("rnr:bloom:g*:checked"):
        redis_client.delete(key)
    started = open_index()
    started.check_marker_without_database()
    assert started.status()["mode"] == "database" and started.lookup("X-1") is None
    assert "no database-backed check" in started.status()["reason"]
    assert not started.needs_rebuild  # a rebuild could not run without the database


@pytest.mark.parametrize("store_kind", ["redis"], indirect=True)
def test_redis_with_another_run_id_is_not_trusted_without_database(open_index, store_kind, session_factory,
                                                                   engine, redis_client):
    """A Redis restored from an older snapshot holds its bits, pointer, marker and check record,
    but has another run_id than the server the record was made on: it may lack the last writes."""
    index = open_index()
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, numbers("RS", 20))
    index.check_marker(newest_batch(engine))
    [key] = list(redis_client.scan_iter("rnr:bloom:g*:checked"))
    record = json.loads(redis_client.get(key))
    assert record["run_id"] == redis_client.info("server")["run_id"]
    redis_client.set(key, json.dumps(record | {"run_id": "0" * 40}))  # as recorded before a restart

    started = open_index()
    started.check_marker_without_database()
    assert started.status()["mode"] == "database" and started.lookup("RS-000001") is None
    assert "run_id" in started.status()["reason"]
    index.check_marker_without_database()  # also a process that trusted it before the outage
    assert index.status()["mode"] == "database" and index.lookup("NEVER") is None
    index.check_marker(newest_batch(engine))  # the database is back: its check decides, and records
    assert index.status()["mode"] == "bloom"
    started.check_marker_without_database()
    assert started.status()["mode"] == "bloom"


def test_store_that_lost_bits_is_not_trusted_without_database(open_index, session_factory, engine, store_kind,
                                                              tmp_path, request):
    index = open_index()
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, numbers("LB", 100))
    index.check_marker(newest_batch(engine))
    redis_client = request.getfixturevalue("redis_client") if store_kind == "redis" else None
    _lose_the_store(index, store_kind, tmp_path, redis_client)  # Redis restarted empty; a shard file replaced
    started = open_index()
    started.check_marker_without_database()
    assert started.status()["mode"] == "database"
    assert started.lookup("LB-000001") is None and started.lookup("NEVER") is None


def test_generation_found_behind_is_not_trusted_without_database(open_index, session_factory, engine):
    """Once this process's database-backed check found the marker behind, only a rebuild restores
    trust: the store-only check must not undo that verdict while the database is down."""
    index = open_index()
    index.check_marker(None)
    with session_factory() as session:
        institution_id = make_institution(session)
        session.commit()
        register(index, session, institution_id, numbers("GB", 10))
        index.check_marker(newest_batch(engine))
        make_batch(session, institution_id)  # committed without its bits
        session.commit()
    index.check_marker(newest_batch(engine))
    assert index.needs_rebuild and index.status()["mode"] == "database"
    index.check_marker_without_database()
    assert index.status()["mode"] == "database" and index.lookup("GB-000001") is None
    assert index.needs_rebuild

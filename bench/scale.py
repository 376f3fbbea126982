"""bench/scale: a registry grown to a target size on PostgreSQL + Redis, from 1 M-number files,
as institutions send them (`flask --app wsgi import-numbers FILE`, a process per file).

Resumable: its state (database, files done, the rate of each) is kept in ``--state`` after every
file, and a second run with the same ``--state`` continues where the first stopped (100 M numbers
take hours). At the target it reports:

- the import rate of every file (flat or not as the registry grows), and each import's peak RSS;
- PostgreSQL bytes per number: heap and indexes of the ``report_numbers`` partitions
  (``pg_relation_size`` / ``pg_indexes_size``) divided by the rows, and ``shared_buffers``;
- Redis bytes per number: ``MEMORY USAGE`` of the current generation's shard keys / rows;
- ``flask bloom rebuild``: seconds and peak RSS;
- the false-positive rate measured on ``--absent`` never-registered numbers against the configured
  one (the shards read from Redis once, the bits tested here);
- query-log bytes per row (``--query-log`` rows of one day written through the registry's buffer);
- verify req/s on gunicorn against the bare endpoint on the same gunicorn (bench/verify's method).

    .venv/bin/python -m bench.scale --target 100000000 [--state bench-scale-state]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres] [--redis-url redis://…/3]
        [--file-size 1000000] [--absent 1000000] [--query-log 500000] [--verify-seconds 8] [--workers 4] [--drop]
        [--no-rebuild] [--database rnr_scale]

Not in CI. Give PostgreSQL the ``shared_buffers`` README says (a quarter of the host's memory);
the report names the value it ran with.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from bench.common import BIN, ROOT, absent_number, synthetic_number

PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
DATABASE = "rnr_scale"
QUARTER = "2026Q3"


class State:
    """The run's progress, written after every file (so a stopped run resumes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def environment(state: State) -> dict:
    d = state.data
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REQUIRE_"))},
            "DATABASE_URL": d["database_url"], "REDIS_URL": d["redis_url"],
            "INSTANCE_DIR": str(state.folder / "instance"), "SECRET_KEY": "bench-scale", "AUDIT_KEY": "bench-scale",
            "BLOOM_CAPACITY": str(d["capacity"]), "BACKGROUND_INTERVAL": "0"}


def set_up(state: State, args) -> None:
    """Once: a database of the run's own, migrated, an institution; the Redis db emptied."""
    import redis

    from registry.infra.db import make_engine

    admin = make_engine(args.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{args.database}"'))
    admin.dispose()
    redis.Redis.from_url(args.redis_url).flushdb()
    state.data = {"database_url": args.database_url.rsplit("/", 1)[0] + "/" + args.database, "redis_url": args.redis_url,
                  "capacity": max(args.target, 10_000_000), "file_size": args.file_size, "files": []}
    code = """
from portal import create_app
from registry.infra.migrate import upgrade
from registry.institutions.authorities import seed_authorities
from registry.institutions.models import Authority
from registry.institutions.service import create_institution
from registry.numbers.normalize import make_uscc
from sqlalchemy import select
app = create_app()
reg = app.extensions["registry"]
upgrade(reg.engine)
with reg.sessions() as s:
    seed_authorities(s)
    authority = s.scalar(select(Authority).where(Authority.code == "11"))
    uscc = make_uscc("91330000000000001")
    create_institution(s, uscc=uscc, name="规模测试机构", review_authority=authority)
    s.commit()
print(uscc)
reg.close()
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=environment(state), capture_output=True,
                          text=True, check=True)
    state.data["uscc"] = done.stdout.strip().splitlines()[-1]
    state.save()


def timed(command: list[str], env: dict, log: Path) -> dict:
    """Run a process to its end: wall seconds, peak RSS (MiB) of the largest process of its tree
    (``wait4``: the process and the helpers it waited for), exit status, last output line."""
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = log.read_text().strip().splitlines()
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024), "status": proc.returncode,
            "last": lines[-1] if lines else ""}


def import_file(state: State, index: int) -> dict:
    size = state.data["file_size"]
    path = state.folder / "file.txt"
    with path.open("w") as fh:
        for start in range(0, size, 100_000):
            fh.write("".join(f"{synthetic_number(index * size + j)}\n"
                             for j in range(start, min(start + 100_000, size))))
    result = timed([str(BIN / "flask"), "--app", "wsgi", "import-numbers", str(path), "--institution",
                    state.data["uscc"], "--quarter", QUARTER], environment(state), state.folder / "import.log")
    path.unlink()
    if result["status"] != 0:
        raise SystemExit(f"import of file {index} failed: {result}")
    return {"file": index, "numbers": size, **result, "rate": round(size / result["seconds"])}


def measure(state: State, args) -> dict:
    import redis

    from registry.bloom.layout import HEADER_SIZE, Pointer
    from registry.bloom.stores import RedisStore
    from registry.infra.db import make_engine

    engine = make_engine(state.data["database_url"])
    with engine.connect() as c:
        rows = c.execute(text("SELECT count(*) FROM report_numbers")).scalar()
        heap, indexes = c.execute(text(
            "SELECT sum(pg_table_size(i.inhrelid)), sum(pg_indexes_size(i.inhrelid)) FROM pg_inherits i "
            "WHERE i.inhparent = 'report_numbers'::regclass")).one()
        heap, indexes = int(heap), int(indexes)
        shared_buffers = c.execute(text("SHOW shared_buffers")).scalar()
    engine.dispose()
    client = redis.Redis.from_url(state.data["redis_url"])
    pointer = Pointer.loads(client.get(RedisStore.POINTER))
    layout = pointer.layout
    keys = [RedisStore.key(pointer.generation, s) for s in range(layout.shards)]
    redis_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in keys)
    # false positives: the shards read once, never-registered numbers tested here
    shards = [client.get(k) for k in keys]
    positives = 0
    for i in range(args.absent):
        shard, offsets = layout.offsets(absent_number(i))
        data = shards[shard]
        if all(data[HEADER_SIZE + (o >> 3)] & (0x80 >> (o & 7)) for o in offsets):
            positives += 1
    client.close()
    return {"rows": rows, "pg_heap_bytes": int(heap), "pg_index_bytes": int(indexes),
            "pg_bytes_per_number": round((heap + indexes) / rows, 1), "pg_heap_per_number": round(heap / rows, 1),
            "pg_index_per_number": round(indexes / rows, 1), "shared_buffers": shared_buffers,
            "redis_bytes": redis_bytes, "redis_bytes_per_number": round(redis_bytes / rows, 2),
            "redis_bytes_per_capacity": round(redis_bytes / layout.capacity, 3),
            "bloom_capacity": layout.capacity, "bloom_shards": layout.shards,
            "fp_measured": positives / args.absent, "fp_absent_tested": args.absent,
            "fp_configured": layout.error_rate}


def query_log_bytes(state: State, rows: int) -> dict:
    """Bytes per query-log row (heap and indexes of the day partitions): ``rows`` verifications
    of one day written through the registry's own buffer (COPY), as the verify path logs them."""
    import datetime as dt

    from registry.infra.db import make_engine
    from registry.verification.querylog import QueryLogBuffer, QueryLogDays

    engine = make_engine(state.data["database_url"])
    buffer = QueryLogBuffer(engine=engine, secret=b"bench-scale", days=QueryLogDays(engine=engine))
    day = dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)
    for i in range(rows):
        registered = i % 2 == 0
        buffer.record(at=day + dt.timedelta(seconds=i * 80_000 / rows),
                      number=synthetic_number(i) if registered else absent_number(i), institution_text=None,
                      institution_id=None, status="found" if registered else "not_found",
                      client_address=f"10.{i % 250}.{i // 250 % 250}.{i % 7}")
        if len(buffer) >= 50_000:
            buffer.flush()
    buffer.flush()
    with engine.begin() as c:
        c.execute(text("ANALYZE query_log"))
        size, count = c.execute(text(
            "SELECT sum(pg_total_relation_size(i.inhrelid)), (SELECT count(*) FROM query_log) FROM pg_inherits i "
            "WHERE i.inhparent = 'query_log'::regclass")).one()
    engine.dispose()
    return {"rows": count, "bytes": int(size), "bytes_per_row": round(int(size) / count, 1)}


def verify_rate(state: State, args) -> dict:
    """req/s of /api/v1/verify on gunicorn against the bare endpoint on the same gunicorn, half
    registered and half absent numbers, alternating (as bench/verify does)."""
    import random
    import statistics

    from bench.common import free_port, gunicorn, wait_http
    from bench.verify import cpu_seconds, cpu_used, run_wrk

    rows = len(state.data["files"]) * state.data["file_size"]
    rng = random.Random(7)
    paths = state.folder / "paths.txt"
    with paths.open("w") as fh:
        for _ in range(20_000):
            number = synthetic_number(rng.randrange(rows)) if rng.random() < 0.5 else absent_number(rng.randrange(10**9))
            fh.write(f"/api/v1/verify?number={number}\n")
    env = {**environment(state), "RATELIMIT_VERIFY": "100000000/minute;100000000/day"}
    prewarmed = prewarm(state) if args.prewarm else None
    app_port, bare_port = free_port(), free_port()
    procs = [gunicorn("wsgi:app", app_port, env, workers=args.workers),
             gunicorn("bench.bare_app:app", bare_port, env, workers=args.workers)]
    ours, bare = [], []
    try:
        wait_http(f"http://127.0.0.1:{app_port}/healthz")
        wait_http(f"http://127.0.0.1:{bare_port}/api/v1/verify?number=1")
        run_wrk(app_port, paths, 3)
        run_wrk(bare_port, paths, 3)
        pids = {app_port: procs[0].pid, bare_port: procs[1].pid}
        for i in range(args.verify_rounds):
            for port, runs in ([(bare_port, bare), (app_port, ours)][:: 1 if i % 2 == 0 else -1]):
                before = cpu_seconds(pids[port])
                run = run_wrk(port, paths, args.verify_seconds)
                used = cpu_used(before, cpu_seconds(pids[port]))
                run["cpu_us"] = {k: round(v / (run["rps"] * args.verify_seconds) * 1e6) for k, v in used.items()}
                runs.append(run)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    return {"rows": rows, "workers": args.workers, "rps": statistics.median(r["rps"] for r in ours),
            "bare_rps": statistics.median(r["rps"] for r in bare),
            "ratio": statistics.median(o["rps"] / b["rps"] for o, b in zip(ours, bare)),
            "p99_ms": statistics.median(r["p99"] for r in ours), "errors": sum(r["errors"] for r in ours),
            "prewarmed": prewarmed,
            "cpu_us": {k: statistics.median(r["cpu_us"][k] for r in ours) for k in ours[0]["cpu_us"]},
            "bare_cpu_us": statistics.median(r["cpu_us"]["workers"] for r in bare)}


def prewarm(state: State) -> dict:
    """What a production database keeps in memory (README: RAM for the primary-key indexes,
    ``shared_buffers`` a quarter of it): ``report_numbers``' indexes read into shared buffers and
    its heap into the OS's page cache (``pg_prewarm``), as a restarted primary or a new replica
    is warmed before it takes lookups. Without it a 100 M registry's lookups wait on the disk
    (docs/scale.md); where the heap does not fit in memory, they still do."""
    from registry.infra.db import make_engine

    engine = make_engine(state.data["database_url"], isolation_level="AUTOCOMMIT")
    started = time.monotonic()
    with engine.connect() as c:
        c.execute(text("CREATE EXTENSION IF NOT EXISTS pg_prewarm"))
        indexes = c.execute(text(
            "SELECT coalesce(sum(pg_prewarm(i.indexrelid)), 0) FROM pg_index i JOIN pg_inherits h "
            "ON h.inhrelid = i.indrelid WHERE h.inhparent = 'report_numbers'::regclass")).scalar()
        heap = c.execute(text(
            "SELECT coalesce(sum(pg_prewarm(h.inhrelid, 'read')), 0) FROM pg_inherits h "
            "WHERE h.inhparent = 'report_numbers'::regclass")).scalar()
    engine.dispose()
    return {"index_blocks": int(indexes), "heap_blocks": int(heap), "seconds": round(time.monotonic() - started, 1)}


def report(state: State) -> None:
    d = state.data
    print("\nimport rate per file (flask import-numbers, PostgreSQL + Redis):")
    for f in d["files"]:
        print(f"  file {f['file']:>4}: {f['rate']:>8,}/s  {f['seconds']:>7.1f} s  peak RSS {f['peak_rss_mib']} MiB")
    if len(d["files"]) > 1:
        first, last = d["files"][0]["rate"], d["files"][-1]["rate"]
        print(f"  last/first rate: {last / first:.2f}")
    m = d.get("measured")
    if m:
        print(f"\nat {m['rows']:,} numbers (shared_buffers {m['shared_buffers']}):")
        print(f"  PostgreSQL: {m['pg_bytes_per_number']} B/number (heap {m['pg_heap_per_number']}, "
              f"indexes {m['pg_index_per_number']})")
        print(f"  Redis: {m['redis_bytes_per_number']} B/number ({m['redis_bytes'] / 2**20:.0f} MiB for capacity "
              f"{m['bloom_capacity']:,}, {m['bloom_shards']} shards: "
              f"{m['redis_bytes_per_capacity']} B per number of capacity)")
        print(f"  false positives: {m['fp_measured']:.5f} measured on {m['fp_absent_tested']:,} absent numbers, "
              f"{m['fp_configured']} configured")
    r = d.get("rebuild")
    if r:
        print(f"  bloom rebuild: {r['seconds']} s, peak RSS {r['peak_rss_mib']} MiB ({r['last']})")
    q = d.get("query_log")
    if q:
        print(f"  query log: {q['bytes_per_row']} B/row (heap and indexes, {q['rows']:,} rows of one day)")
    v = d.get("verify")
    if v:
        print(f"  verify: {v['rps']:,.0f} req/s with {v['workers']} workers, {v['ratio']:.2f}× the bare endpoint "
              f"({v['bare_rps']:,.0f} req/s), p99 {v['p99_ms']} ms, {v['errors']} errors")
        if "cpu_us" in v:
            c = v["cpu_us"]
            print(f"  (explains: CPU per request, µs — bare: its workers {v['bare_cpu_us']:.0f}; verify: its workers "
                  f"{c['workers']:.0f}, PostgreSQL {c['PostgreSQL']:.0f}, Redis {c['Redis']:.0f})")
    print("\n" + json.dumps({k: v for k, v in d.items() if k != "files"}, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", type=int, required=True, help="numbers in the registry at the end")
    parser.add_argument("--state", type=Path, default=ROOT / "bench-scale-state")
    parser.add_argument("--database-url", default=PG_SERVER, help="any database of the server (the run makes its own)")
    parser.add_argument("--database", default=DATABASE,
                        help="the run's own database (made at set-up, dropped by --drop); another name keeps two runs side by side")
    parser.add_argument("--redis-url", default=REDIS, help="a Redis db of the run's own (flushed at set-up)")
    parser.add_argument("--file-size", type=int, default=1_000_000)
    parser.add_argument("--absent", type=int, default=1_000_000)
    parser.add_argument("--query-log", type=int, default=500_000, help="query-log rows written to size a row")
    parser.add_argument("--verify-seconds", type=int, default=8, help="each wrk run (0: no verify figures)")
    parser.add_argument("--verify-rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers for the verify figures")
    parser.add_argument("--drop", action="store_true", help="drop the database and state at the end")
    parser.add_argument("--no-prewarm", dest="prewarm", action="store_false",
                        help="measure verify without reading report_numbers into memory first (pg_prewarm)")
    parser.add_argument("--no-rebuild", action="store_true",
                        help="skip timing `bloom rebuild` (9.5 s a million at 100 M: docs/scale.md)")
    args = parser.parse_args(argv)
    if not args.database.replace("_", "").isalnum():
        parser.error("--database: letters, digits and _ only")
    args.state.mkdir(parents=True, exist_ok=True)
    state = State(args.state)
    if not state.data:
        set_up(state, args)
        print(f"set up {state.data['database_url']} and {state.data['redis_url']}", flush=True)
    files = args.target // state.data["file_size"]
    while len(state.data["files"]) < files:
        result = import_file(state, len(state.data["files"]))
        state.data["files"].append(result)
        state.data.pop("measured", None)
        state.data.pop("rebuild", None)
        state.data.pop("verify", None)
        state.save()
        print(f"file {result['file']}: {result['rate']:,}/s, {result['seconds']} s, peak RSS {result['peak_rss_mib']} MiB",
              flush=True)
    if state.data.get("rebuild", {}).get("status", 0) != 0:
        print(f"bloom rebuild failed, again now: {state.data.pop('rebuild')}", flush=True)
    if "rebuild" not in state.data and not args.no_rebuild:
        state.data["rebuild"] = timed([str(BIN / "flask"), "--app", "wsgi", "bloom", "rebuild"], environment(state),
                                      state.folder / "rebuild.log")
        state.save()
    if "measured" not in state.data:
        state.data["measured"] = measure(state, args)
        state.save()
    if args.query_log and "query_log" not in state.data:
        state.data["query_log"] = query_log_bytes(state, args.query_log)
        state.save()
    if args.verify_seconds and "verify" not in state.data:
        state.data["verify"] = verify_rate(state, args)
        state.save()
    report(state)
    if args.drop:
        from registry.infra.db import make_engine

        admin = make_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            database = state.data["database_url"].rsplit("/", 1)[1]
            c.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
        state.path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bench/tlog: the transparency log's append rate and bytes per entry.

Registers ``--numbers`` report numbers (in files of up to 1 M, through the registry's own
``RegistrationService``: rows, Bloom bits and pending log entries in one transaction), then
integrates them with the integrator (commitments, entry texts, leaf hashes, tiles, a signed
checkpoint per 200,000 entries). Reported per backend, measured in the same run:

- the import rate with the log on, and the integration (append) rate, as a ratio of the import's;
- bytes per entry: ``tlog_entries`` (heap and indexes), ``tlog_tiles`` (the hashes), the pending
  table left over, and the salt column ``report_numbers`` gained; apart, the pending table while
  the entries wait (a span of up to 10,000 entries a row);
- the time of an inclusion proof at the final size (a few tile reads).

    .venv/bin/python -m bench.tlog [--numbers 1000000] [--sqlite] [--no-postgres]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
FILE = 1_000_000
KEY = "PRIVATE+KEY+registry.localhost/tlog+a1763da1+AQV38jww8jPSFE8zpITiHPpG8CfyPll5/46DC08zPzEe"  # bench only


def run(database_url: str, work: Path, n: int) -> dict:
    from sqlalchemy import select, text

    from portal import create_app
    from registry.infra.migrate import upgrade
    from registry.institutions.authorities import seed_authorities
    from registry.institutions.models import Authority
    from registry.institutions.service import create_institution
    from registry.numbers.normalize import make_uscc
    from registry.numbers.quarters import Quarter
    from registry.tlog.merkle import Tree
    from registry.tlog.tiles import TileReader

    app = create_app({"DATABASE_URL": database_url, "REDIS_URL": "", "INSTANCE_DIR": str(work),
                      "SECRET_KEY": "bench", "BLOOM_CAPACITY": max(2 * n, 10_000_000), "BACKGROUND_INTERVAL": 0,
                      "TLOG_SIGNING_KEY": KEY})
    reg = app.extensions["registry"]
    upgrade(reg.engine)
    with reg.sessions() as s:
        seed_authorities(s)
        a = s.scalar(select(Authority).where(Authority.code == "09"))
        iid = create_institution(s, uscc=make_uscc("91310000000000001"), name="基准机构", review_authority=a).id
        s.commit()
    reg.wait_until_trusted()
    import_s = 0.0
    for f, start in enumerate(range(0, n, FILE)):
        numbers = [f"TL{i // 1_000_000:04d}-{i % 1_000_000:06d}" for i in range(start, min(n, start + FILE))]
        t = time.perf_counter()
        reg.registration.register(institution_id=iid, quarter=Quarter(2026, 3), numbers=numbers, sha256=f"{f:064x}")
        import_s += time.perf_counter() - t
    waiting = _pending_bytes(reg.engine)
    t = time.perf_counter()
    done = reg.tlog.integrate()
    integrate_s = time.perf_counter() - t
    assert done.size == n, done
    sizes = {}
    if reg.engine.dialect.name == "postgresql":
        with reg.engine.connect() as c:
            for table in ("tlog_entries", "tlog_tiles", "tlog_pending", "tlog_checkpoints"):
                sizes[table] = c.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar()
            sizes["report_numbers.salt"] = c.execute(text(
                "SELECT sum(pg_column_size(salt)) FROM report_numbers")).scalar()
    else:
        with reg.engine.connect() as c:
            for name, table in (("tlog_entries", "tlog_entries"), ("tlog_tiles", "tlog_tiles"),
                                ("tlog_pending", "tlog_pending"), ("tlog_checkpoints", "tlog_checkpoints")):
                sizes[name] = c.execute(text(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = :t OR name IN "
                    "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t)"), {"t": table}).scalar()
            sizes["report_numbers.salt"] = 17 * n  # 16 bytes and a length byte in each record
    rng = random.Random(1)
    with reg.sessions() as s:
        tree = Tree(TileReader(s))
        t = time.perf_counter()
        for _ in range(200):
            tree.inclusion(rng.randrange(n), n)
        proof_ms = (time.perf_counter() - t) / 200 * 1000
    reg.close()
    return {"import_s": import_s, "integrate_s": integrate_s, "sizes": sizes, "proof_ms": proof_ms,
            "checkpoints": len(done.signed), "waiting": waiting}


def _pending_bytes(engine) -> int:
    """``tlog_pending``'s bytes (heap, TOAST and index) with every entry still waiting."""
    from sqlalchemy import text

    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            return c.execute(text("SELECT pg_total_relation_size('tlog_pending')")).scalar()
        return c.execute(text("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = 'tlog_pending'")).scalar()


def report(name: str, n: int, r: dict) -> None:
    print(f"\n{name}: {n:,} entries")
    print(f"  import with the log on            {n / r['import_s']:>10,.0f} numbers/s")
    print(f"  integration (append)              {n / r['integrate_s']:>10,.0f} entries/s   "
          f"ratio {r['import_s'] / r['integrate_s']:.2f}x of the import rate; {r['checkpoints']} checkpoints signed")
    total = 0
    for table, size in r["sizes"].items():
        total += size
        print(f"  {table:<32} {size / n:>10.1f} B/entry")
    print(f"  {'total':<32} {total / n:>10.1f} B/entry   → {total / n * 1.6e9 / 1e9:,.0f} GB at 16 亿")
    print(f"  inclusion proof at this size      {r['proof_ms']:>10.2f} ms")
    print(f"  tlog_pending while waiting        {r['waiting'] / n:>10.1f} B/entry")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--sqlite", action="store_true", help="also measure SQLite")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    from sqlalchemy import text

    from registry.infra.db import make_engine

    work = Path(tempfile.mkdtemp(prefix="bench-tlog-"))
    try:
        if not args.no_postgres:
            dbname = f"bench_tlog_{os.getpid()}"
            admin = make_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{dbname}"'))
            try:
                report("PostgreSQL", args.numbers,
                       run(PG_SERVER.rsplit("/", 1)[0] + "/" + dbname, work / "pg", args.numbers))
            finally:
                with admin.connect() as c:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        if args.sqlite:
            report("SQLite", args.numbers, run(f"sqlite:///{work / 'lite.db'}", work / "lite", args.numbers))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

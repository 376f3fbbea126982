"""bench/tlog: the transparency log's append rate and bytes per entry, on the paths users take.

Each round starts a fresh registry with one institution, then times, each as a process of its
own from its start to its exit (start-up included):

- the **import** with the log on: ``flask --app wsgi import-numbers FILE`` for each file of up to
  1 M numbers (rows, Bloom bits and the pending log entries in one transaction), as on a web host
  or worker (no signing key there);
- the **integration**: ``flask --app wsgi tlog integrate`` with ``TLOG_SIGNING_KEY`` set, as on
  the log's one integrator host: every pending entry appended (commitments, entry texts, leaf
  hashes, tiles, a signed checkpoint per 200,000 entries);
- the **baseline**, on PostgreSQL: ``psql \\copy`` of the same rows into a bare table with the
  registry's primary key (bench/import_numbers.py), in the same round.

Stacks: ``postgres-redis`` (a database made on BENCH_DATABASE_URL's server, Redis at
BENCH_REDIS_URL) and, with ``--sqlite``, ``embedded`` (SQLite + local shard files). Rounds
alternate the order of the baseline and the registry's runs; the figures are medians. Then,
read from the database of the last round: bytes per entry (``tlog_entries`` with its indexes,
``tlog_tiles``, the salt column ``report_numbers`` gained, the pending table left over) and,
measured before the integration, the pending table while the entries wait. The time of an
inclusion proof at the final size (a few tile reads) is measured in a process of the registry's
own and explains; it is not a headline.

    .venv/bin/python -m bench.tlog [--numbers 1000000] [--rounds 2] [--sqlite] [--no-postgres]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import BIN
from bench.import_numbers import QUARTER, USCC_SEED, Stack, compile_sources, copy_rows, make_csv, psql_copy, timed

FILE = 1_000_000  # the per-file cap of import-numbers
KEY = "PRIVATE+KEY+registry.localhost/tlog+a1763da1+AQV38jww8jPSFE8zpITiHPpG8CfyPll5/46DC08zPzEe"  # bench only
TABLES = ("tlog_entries", "tlog_tiles", "tlog_pending", "tlog_checkpoints")


def _pending_bytes() -> int:
    """``tlog_pending``'s bytes (heap, TOAST and index) with every entry still waiting."""
    from sqlalchemy import text

    from workflows.services import services_from_environment

    engine = services_from_environment().engine
    with engine.connect() as c:
        if engine.dialect.name == "postgresql":
            return int(c.execute(text("SELECT pg_total_relation_size('tlog_pending')")).scalar())
        return int(c.execute(text("SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = 'tlog_pending'")).scalar())


def _integrated(n: int) -> dict:
    """After the integration: the bytes of the log's tables (with their indexes) and of the salt
    column, how many checkpoints were signed, and the milliseconds of an inclusion proof of a
    random entry at tree size ``n`` (200 proofs, in this process: it explains, it is no headline)."""
    import random

    from sqlalchemy import func, select, text

    from registry.tlog.merkle import Tree
    from registry.tlog.models import StoredCheckpoint
    from registry.tlog.tiles import TileReader
    from workflows.services import services_from_environment

    services = services_from_environment()
    sizes = {}
    with services.engine.connect() as c:
        if services.engine.dialect.name == "postgresql":
            for table in TABLES:
                sizes[table] = c.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar()
            sizes["report_numbers.salt"] = c.execute(text("SELECT sum(pg_column_size(salt)) FROM report_numbers")).scalar()
        else:
            for table in TABLES:
                sizes[table] = c.execute(text(
                    "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name = :t OR name IN "
                    "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t)"), {"t": table}).scalar()
            sizes["report_numbers.salt"] = 17 * n  # 16 bytes and a length byte in each record
    rng = random.Random(1)
    with services.sessions() as s:
        checkpoints = s.scalar(select(func.count()).select_from(StoredCheckpoint))
        tree = Tree(TileReader(s))
        started = time.perf_counter()
        for _ in range(200):
            tree.inclusion(rng.randrange(n), n)
        proof_ms = (time.perf_counter() - started) / 200 * 1000
    return {"sizes": {k: int(v or 0) for k, v in sizes.items()}, "checkpoints": int(checkpoints), "proof_ms": proof_ms}


def one_round(name: str, work: Path, n: int, r: int) -> dict:
    """A fresh registry: the baseline (PostgreSQL), the imports and the integration, each timed."""
    (work / f"{name}-{r}").mkdir()
    stack = Stack(name, work / f"{name}-{r}", capacity=max(2 * n, 10_000_000))
    files = []
    for f, start in enumerate(range(0, n, FILE)):
        path = work / f"{name}-{r}-{f}.csv"
        make_csv(path, min(FILE, n - start), tag=f"TL{r}{f:02d}S")
        files.append(path)
    out: dict = {"import_s": 0.0, "copy_s": None}
    try:
        def baseline():
            if stack.dbname is None:
                return
            out["copy_s"] = 0.0
            for path in files:
                rows = path.with_suffix(".rows")
                copy_rows(path, rows)
                out["copy_s"] += psql_copy(stack.dbname, rows)[0]
                rows.unlink()

        def registry():
            for path in files:
                seconds, _, _ = timed([str(BIN / "flask"), "--app", "wsgi", "import-numbers", str(path),
                                       "--institution", _uscc(), "--quarter", QUARTER], stack.env)
                out["import_s"] += seconds
            out["waiting"] = stack._run_child(_pending_bytes)
            seconds, _, said = timed([str(BIN / "flask"), "--app", "wsgi", "tlog", "integrate"],
                                     {**stack.env, "TLOG_SIGNING_KEY": KEY})
            size = re.search(r"tree size (\d+)", said)
            if size is None or int(size.group(1)) != n:
                raise RuntimeError(f"tlog integrate did not append all {n:,} entries: {said[-500:]}")
            out["integrate_s"] = seconds

        for step in ((baseline, registry) if r % 2 == 0 else (registry, baseline)):
            step()
        out.update(stack._run_child(_integrated, n))
    finally:
        stack.close()
        for path in files:
            path.unlink(missing_ok=True)
    return out


def _uscc() -> str:
    from registry.numbers.normalize import make_uscc

    return make_uscc(USCC_SEED)


def report(name: str, n: int, rounds: list[dict]) -> None:
    med = lambda key: statistics.median(r[key] for r in rounds)  # noqa: E731
    import_s, integrate_s = med("import_s"), med("integrate_s")
    print(f"\n{name}: {n:,} entries, {len(rounds)} round(s), medians; each step a process, start-up included")
    if rounds[0]["copy_s"] is not None:
        copy_s = med("copy_s")
        print(f"  psql \\copy of the same rows (baseline) {n / copy_s:>10,.0f} rows/s")
        print(f"  import-numbers, log on              {n / import_s:>10,.0f} numbers/s   {copy_s / import_s:.2f}x the copy")
        print(f"  tlog integrate (append)             {n / integrate_s:>10,.0f} entries/s   {copy_s / integrate_s:.2f}x the copy, "
              f"{import_s / integrate_s:.2f}x the import; {rounds[-1]['checkpoints']} checkpoint(s) signed")
    else:
        print(f"  import-numbers, log on              {n / import_s:>10,.0f} numbers/s")
        print(f"  tlog integrate (append)             {n / integrate_s:>10,.0f} entries/s   "
              f"{import_s / integrate_s:.2f}x the import; {rounds[-1]['checkpoints']} checkpoint(s) signed")
    sizes = dict(rounds[-1]["sizes"])
    left = sizes.pop("tlog_pending")  # emptied: on PostgreSQL dead rows until (auto)vacuum returns them
    total = 0
    for table, size in sizes.items():
        total += size
        print(f"  {table:<35} {size / n:>10.1f} B/entry")
    print(f"  {'total':<35} {total / n:>10.1f} B/entry   → {total / n * 1.6e9 / 1e9:,.0f} GB at 16 亿")
    print(f"  tlog_pending while waiting          {rounds[-1]['waiting'] / n:>10.1f} B/entry")
    print(f"  tlog_pending once integrated        {left / n:>10.1f} B/entry (dead rows until vacuum; not in the total)")
    print(f"  (explains: an inclusion proof at this size, in process: {rounds[-1]['proof_ms']:.2f} ms)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numbers", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sqlite", action="store_true", help="also measure the embedded stack (SQLite)")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    if args.numbers < 1:
        parser.error("--numbers must be at least 1")
    stacks = ([] if args.no_postgres else ["postgres-redis"]) + (["embedded"] if args.sqlite else [])
    if "postgres-redis" in stacks and not shutil.which("psql"):
        print("bench/tlog needs psql for its baseline", file=sys.stderr)
        return 2
    compile_sources()
    print(f"bench/tlog: {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores",
          flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-tlog-"))
    try:
        for name in stacks:
            rounds = []
            for r in range(args.rounds):
                rounds.append(one_round(name, work, args.numbers, r))
                print(f"  {name} round {r + 1}: import {rounds[-1]['import_s']:.2f} s, integrate "
                      f"{rounds[-1]['integrate_s']:.2f} s" + (f", copy {rounds[-1]['copy_s']:.2f} s"
                                                              if rounds[-1]["copy_s"] is not None else ""), flush=True)
            report({"postgres-redis": "PostgreSQL + Redis", "embedded": "SQLite (embedded)"}[name], args.numbers, rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

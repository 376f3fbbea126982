"""bench/import: loading a large report-number CSV, against `psql \\copy` of the same rows.

For PostgreSQL it compares the registry's importer (parse, normalise, Bloom bits, COPY into a
staging table, INSERT … ON CONFLICT DO NOTHING into the partitioned table) with `psql \\copy` of
the same normalised rows into a bare table with the same unique index, in the same run. It also
loads the file into SQLite, and samples the importer's anonymous RSS (RssAnon) to report its peak
for two file sizes (constant memory means the peaks agree).

    .venv/bin/python -m bench.import_numbers [--numbers 5000000] [--big 20000000] [--skip-big]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import ROOT

PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def make_csv(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("报告编号\n")
        block = []
        for i in range(n):
            block.append(f"wt{2020 + i % 5}-{i:08d}\n")
            if len(block) == 100_000:
                fh.write("".join(block))
                block.clear()
        fh.write("".join(block))


def run_import(database_url: str, csv_path: Path, work: Path) -> dict:
    """Run the importer in a child process, sampling its RssAnon; returns seconds and peak MiB."""
    code = f"""
import json, os, sys, time
os.environ.update({{"DATABASE_URL": {database_url!r}, "REDIS_URL": "", "INSTANCE_DIR": {str(work)!r},
                    "SECRET_KEY": "bench", "BLOOM_CAPACITY": "40000000", "BACKGROUND_INTERVAL": "0"}})
from portal import create_app
from registry.infra.migrate import upgrade
from registry.institutions.authorities import seed_authorities
from registry.institutions.service import create_institution
from registry.institutions.models import Authority
from registry.numbers.normalize import make_uscc
from registry.numbers.quarters import Quarter
from registry.registration.service import sha256_of
from importers.numbers import read_report_numbers
from sqlalchemy import select
app = create_app()
reg = app.extensions["registry"]
upgrade(reg.engine)
with reg.sessions() as s:
    seed_authorities(s)
    a = s.scalar(select(Authority).where(Authority.code == "09"))
    iid = create_institution(s, uscc=make_uscc("91310000000000001"), name="基准机构", review_authority=a).id
    s.commit()
reg.wait_until_trusted()
print("READY", flush=True)
sys.stdin.readline()
start = time.perf_counter()
with open({str(csv_path)!r}, "rb") as fh:
    digest = sha256_of(fh)
    parsed = read_report_numbers(fh, "bench.csv", max_bytes=1 << 40, max_numbers=1 << 40)
    receipt = reg.registration.register(institution_id=iid, quarter=Quarter(2026, 3), numbers=parsed.numbers(),
                                        sha256=digest)
print(json.dumps({{"seconds": time.perf_counter() - start, "accepted": receipt.accepted}}), flush=True)
reg.close()
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "READY"
    baseline = _rss_anon(proc.pid)
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            value = _rss_anon(proc.pid)
            if value:
                peak[0] = max(peak[0], value)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    result = json.loads(proc.stdout.readline())
    done.set()
    proc.wait()
    result["peak_rss_anon_mib"] = peak[0] / 1024
    result["start_rss_anon_mib"] = baseline / 1024
    return result


def _rss_anon(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def psql_copy(dbname: str, rows_path: Path) -> float:
    setup = (
        "DROP TABLE IF EXISTS bare_numbers; CREATE TABLE bare_numbers (number varchar(64) NOT NULL, "
        "institution_id integer NOT NULL, quarter varchar(6) NOT NULL, batch_id bigint NOT NULL, "
        "registered_at timestamp NOT NULL, withdrawn_at timestamp, withdraw_reason varchar(500), "
        "PRIMARY KEY (number, institution_id));"
    )
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-c", setup], check=True)
    start = time.perf_counter()
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-c",
                    f"\\copy bare_numbers (number, institution_id, quarter, batch_id, registered_at) FROM '{rows_path}' CSV"],
                   check=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numbers", type=int, default=5_000_000)
    parser.add_argument("--big", type=int, default=20_000_000)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args(argv)
    if not shutil.which("psql"):
        print("bench/import needs psql", file=sys.stderr)
        return 2
    from sqlalchemy import text

    from registry.infra.db import make_engine
    from registry.numbers.normalize import normalize_number

    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        csv_path = work / "numbers.csv"
        make_csv(csv_path, args.numbers)
        rows_path = work / "rows.csv"
        with csv_path.open(encoding="utf-8") as src, rows_path.open("w") as dst:
            next(src)
            for line in src:
                dst.write(f"{normalize_number(line.strip())},1,2026Q3,1,2026-11-24 10:00:00\n")
        dbname = f"bench_import_{os.getpid()}"
        admin = make_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        url = PG_SERVER.rsplit("/", 1)[0] + "/" + dbname
        try:
            copy_s = psql_copy(dbname, rows_path)
            pg = run_import(url, csv_path, work / "pg")
        finally:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        lite = run_import(f"sqlite:///{work / 'lite.db'}", csv_path, work / "lite")
        n = args.numbers
        print(f"\n{n:,} numbers")
        print(f"  psql \\copy (bare table, same unique index) {n / copy_s:>10,.0f} numbers/s")
        print(f"  importer → PostgreSQL                       {n / pg['seconds']:>10,.0f} numbers/s"
              f"   ratio {copy_s / pg['seconds']:.2f}x of psql \\copy")
        print(f"  importer → SQLite                           {n / lite['seconds']:>10,.0f} numbers/s")
        print(f"  importer peak RssAnon: PostgreSQL {pg['peak_rss_anon_mib']:.0f} MiB, SQLite {lite['peak_rss_anon_mib']:.0f} MiB"
              f" (at start {lite['start_rss_anon_mib']:.0f} MiB)")
        if not args.skip_big:
            big_csv = work / "big.csv"
            make_csv(big_csv, args.big)
            big = run_import(f"sqlite:///{work / 'big.db'}", big_csv, work / "big")
            print(f"\n{args.big:,} numbers into SQLite: {args.big / big['seconds']:,.0f} numbers/s, "
                  f"peak RssAnon {big['peak_rss_anon_mib']:.0f} MiB "
                  f"({big['peak_rss_anon_mib'] / lite['peak_rss_anon_mib']:.2f}x the {n:,}-number peak)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bench/bulk: items per second through POST /api/v1/verify/bulk against single verifications per
second on the same server, in the same run (docs/contract.md, "Bulk verification"; issue 17's
target: ≥ 20×).

The bench-verify method (bench/verify.py): for each backend (embedded: SQLite + mapped Bloom
shards; production: PostgreSQL + Redis) and registry size it loads the registry through the real
registration path, issues a platform key with ``flask create-platform-key`` (quota too high to
trip), starts one gunicorn (4 workers, as bench/verify) and runs wrk against it alternately:
single ``GET /api/v1/verify`` (bench/verify.lua, 32 connections) and bulk ``POST`` of
1,000-item bodies (bench/bulk.lua, wrk's Lua scripting; 8 connections), half present and half
absent numbers in both; rate limiting and the query log stay on. The headline is the median of
the rounds' ratios (bulk items/s ÷ single verifications/s), each round running both back to back
(alternating which goes first). Then one connection posting 1,000-item requests one after the
other gives the answer time of one request (p50/p99).

    .venv/bin/python -m bench.bulk [--sizes 1000000] [--backends embedded,postgres-redis]
                                   [--duration 8] [--rounds 4]

PostgreSQL and Redis come from BENCH_DATABASE_URL (a server; the bench makes its own database)
and BENCH_REDIS_URL (a db it may flush), as bench/verify.py takes them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys


from bench.common import BIN, ROOT, absent_number, free_port, gunicorn, synthetic_number, wait_http
from bench.verify import _ms, drop_backend, prepare_backend

ITEMS = 1000


def run_wrk(port: int, script: str, args: list[str], duration: int, connections: int, threads: int = 2) -> dict:
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(ROOT / "bench" / script),
         f"http://127.0.0.1:{port}", "--", *args],
        capture_output=True, text=True, check=True,
    ).stdout
    if os.environ.get("BENCH_SHOW"):
        print(out, flush=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": _ms(lat.get("50")), "p99": _ms(lat.get("99")),
            "errors": int(non2xx.group(1)) if non2xx else 0}


def stop(proc: subprocess.Popen) -> None:
    """Stop the server; one that has not stopped within a minute (gunicorn waits for its workers)
    is killed, so that an error of the run is what the bench reports."""
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench_one(backend: str, size: int, duration: int, rounds: int) -> dict:
    work, env, dbname = prepare_backend(backend, size, "bulk")
    made = subprocess.run([str(BIN / "flask"), "--app", "wsgi", "create-platform-key", "bench",
                           "--per-minute", "1000000000", "--per-day", "1000000000", "--days", "1"],
                          cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    key = made.stdout.strip().splitlines()[-1]

    rng = random.Random(7)

    def number() -> str:
        return synthetic_number(rng.randrange(size)) if rng.random() < 0.5 else absent_number(rng.randrange(10**9))

    paths, bodies = work / "paths.txt", work / "bodies.jsonl"
    with paths.open("w") as fh:
        for _ in range(20_000):
            fh.write(f"/api/v1/verify?number={number()}\n")
    with bodies.open("w") as fh:
        for _ in range(40):
            fh.write(json.dumps({"items": [{"number": number()} for _ in range(ITEMS)]}) + "\n")

    port = free_port()
    proc = gunicorn("wsgi:app", port, env)
    single, many = [], []
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        run_wrk(port, "verify.lua", [str(paths)], 3, 32)  # warm-up: page cache, connections, the directory
        run_wrk(port, "bulk.lua", [str(bodies), key], 3, 8)
        runs = [(lambda: run_wrk(port, "verify.lua", [str(paths)], duration, 32), single),
                (lambda: run_wrk(port, "bulk.lua", [str(bodies), key], duration, 8), many)]
        for i in range(rounds):  # alternate which goes first: the host's speed drifts
            for run, into in (runs if i % 2 == 0 else runs[::-1]):
                into.append(run())
        alone = run_wrk(port, "bulk.lua", [str(bodies), key], duration, 1, threads=1)  # one request at a time
    finally:
        stop(proc)
        drop_backend(work, dbname)
    ratios = sorted(m["rps"] * ITEMS / s["rps"] for s, m in zip(single, many))
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    return {
        "backend": backend, "size": size,
        "single_rps": med(single, "rps"), "items_per_s": med(many, "rps") * ITEMS,
        "ratio": statistics.median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1],
        "alone_p50": alone["p50"], "alone_p99": alone["p99"], "alone_rps": alone["rps"],
        "errors": sum(r["errors"] for r in single + many) + alone["errors"],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--backends", default="embedded,postgres-redis")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    unknown = set(args.backends.split(",")) - {"embedded", "postgres-redis"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}: choose from embedded, postgres-redis")
    if not shutil.which("wrk"):
        print("bench/bulk needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    results = []
    for backend in args.backends.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"{backend}, {size:,} numbers …", flush=True)
            r = bench_one(backend, size, args.duration, args.rounds)
            results.append(r)
            print(f"  single {r['single_rps']:9.0f} verifications/s\n  bulk   {r['items_per_s']:9.0f} items/s  "
                  f"ratio {r['ratio']:.1f}x (rounds {r['ratio_min']:.1f}–{r['ratio_max']:.1f})\n"
                  f"  one 1,000-item request: p50 {r['alone_p50']:.1f} ms  p99 {r['alone_p99']:.1f} ms  "
                  f"non-2xx {r['errors']}", flush=True)
    print("\nbackend          size        single/s     items/s   ratio  1,000-item p50/p99 ms")
    for r in results:
        print(f"{r['backend']:<16} {r['size']:>10,} {r['single_rps']:>10.0f} {r['items_per_s']:>11.0f}  "
              f"{r['ratio']:5.1f}x  {r['alone_p50']:.1f}/{r['alone_p99']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

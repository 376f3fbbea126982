"""bench/verify: /api/v1/verify against a bare Flask JSON endpoint on the same gunicorn.

For each backend (embedded: SQLite + mapped Bloom shards; production: PostgreSQL + Redis) and
each registry size (1 M and 10 M numbers) it loads the registry (and, where the web process
integrates the transparency log itself, the embedded stack, integrates it first, so that the
servers are measured in their steady state), starts both servers with the
same gunicorn settings, and runs wrk against them alternately with a query mix of half present,
half absent numbers; rate limiting (limits too high to trip) and query logging stay on.
It prints req/s and p50/p99 of both (medians over the rounds) and the ratio: the median of the
rounds' ratios, each round running both servers back to back (alternating which goes first), so
that the host's drifting speed cancels out instead of landing on one side.

    .venv/bin/python -m bench.verify [--sizes 1000000,10000000] [--backends embedded,postgres-redis]
                                     [--duration 8] [--rounds 4] [--headers-baseline]

``--headers-baseline`` adds a third server, the bare endpoint sending the headers the contract puts
on every verify answer (security headers, Cache-Control, X-RateLimit-*), to show what those
headers alone cost; the headline ratio stays the one against the bare endpoint.

Each run also reads from /proc the CPU that the server's processes, PostgreSQL and Redis used
(:func:`cpu_seconds`, :func:`cpu_used`), printed as µs per request: it explains the ratio (what the web tier costs
against the bare endpoint, and what the two servers add on a host that runs them too). On a host
where other work uses PostgreSQL or Redis meanwhile, their figures include it.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from bench.common import ROOT, absent_number, free_port, gunicorn, synthetic_number, wait_http

PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def build_registry(env: dict, size: int) -> None:
    """Load `size` numbers for 50 institutions through the real registration path."""
    os.environ.update(env)
    from portal import create_app
    from registry.institutions.service import create_institution
    from registry.infra.migrate import upgrade
    from registry.institutions.authorities import seed_authorities
    from registry.institutions.models import Authority
    from registry.numbers.normalize import make_uscc
    from registry.numbers.quarters import Quarter
    from sqlalchemy import select

    app = create_app({"BACKGROUND_INTERVAL": 0})
    reg = app.extensions["registry"]
    upgrade(reg.engine)
    with reg.sessions() as s:
        seed_authorities(s)
        authority = s.scalar(select(Authority).where(Authority.code == "11"))
        ids = [create_institution(s, uscc=make_uscc(f"9133000000{i:07d}"), name=f"基准测试机构{i}", review_authority=authority).id
               for i in range(50)]
        s.commit()
    reg.wait_until_trusted()
    per = size // len(ids)
    started = time.monotonic()
    for k, iid in enumerate(ids):
        numbers = (synthetic_number(k * per + j) for j in range(per))
        reg.registration.register(institution_id=iid, quarter=Quarter(2026, 3), numbers=numbers, sha256=f"{k:064d}")
    print(f"  loaded {size:,} numbers in {time.monotonic() - started:.0f}s", flush=True)
    if reg.tlog.integrates:
        # the embedded stack's web process integrates the transparency log itself (production: one
        # integrator host): done here, so that the servers measured are in their steady state and
        # not appending the load's entries meanwhile (10 M entries: minutes of a worker's CPU,
        # which had cost the 10 M embedded figure a third of the workers' samples)
        started = time.monotonic()
        done = reg.tlog.integrate()
        print(f"  transparency log: {done.size:,} entries integrated in {time.monotonic() - started:.0f}s", flush=True)
    reg.close()


def run_wrk(port: int, paths_file: Path, duration: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency", "-s", str(ROOT / "bench" / "verify.lua"),
         f"http://127.0.0.1:{port}", "--", str(paths_file)],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": _ms(lat.get("50")), "p99": _ms(lat.get("99")), "errors": int(non2xx.group(1)) if non2xx else 0}


_HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(server_pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds (user + sys) used so far by each process of the gunicorn server ``server_pid``
    (its master and workers), of PostgreSQL and of Redis, read from /proc: ``{pid: (group,
    seconds)}``. Sampled around a wrk run, :func:`cpu_used` turns two samples into each side's CPU."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        ppid, used = int(rest[1]), (int(rest[11]) + int(rest[12])) / _HZ
        if int(pid) == server_pid or ppid == server_pid:
            out[int(pid)] = ("workers", used)
        elif name.startswith("postgres"):
            out[int(pid)] = ("PostgreSQL", used)
        elif name.startswith("redis-server"):
            out[int(pid)] = ("Redis", used)
    return out


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """Seconds of CPU by group between two :func:`cpu_seconds` samples (a process that started
    meanwhile from zero; one that ended meanwhile is not counted)."""
    used = {"workers": 0.0, "PostgreSQL": 0.0, "Redis": 0.0}
    for pid, (group, seconds) in after.items():
        earlier = before.get(pid)
        used[group] += seconds - (earlier[1] if earlier is not None and earlier[0] == group else 0.0)
    return used


def _ms(value: str | None) -> float:
    if not value:
        return float("nan")
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def prepare_backend(backend: str, size: int, name: str) -> tuple[Path, dict, str | None]:
    """A work folder and environment for ``backend`` with a registry of ``size`` numbers loaded through
    the real registration path (in a child, so this process keeps no app state); the PostgreSQL
    database made for it, if any (give it to :func:`drop_backend` at the end)."""
    work = Path(tempfile.mkdtemp(prefix=f"bench-{name}-{backend}-"))
    env = {"INSTANCE_DIR": str(work), "SECRET_KEY": "bench",
           "RATELIMIT_VERIFY": "100000000/minute;100000000/day",  # two limits, as by default
           "BLOOM_CAPACITY": str(max(size * 2, 1_000_000)), "DATABASE_URL": "", "REDIS_URL": ""}
    dbname = None
    if backend == "postgres-redis":
        from registry.infra.db import make_engine

        dbname = f"bench_{name}_{os.getpid()}"
        admin = make_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}"'))
            c.execute(text(f'CREATE DATABASE "{dbname}"'))
        env["DATABASE_URL"] = PG_SERVER.rsplit("/", 1)[0] + "/" + dbname
        env["REDIS_URL"] = REDIS
        import redis

        redis.Redis.from_url(REDIS).flushdb()
    pid = os.fork()
    if pid == 0:
        try:
            build_registry(env, size)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return work, env, dbname


def drop_backend(work: Path, dbname: str | None) -> None:
    if dbname:
        from registry.infra.db import make_engine

        admin = make_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    shutil.rmtree(work, ignore_errors=True)


def bench_one(backend: str, size: int, duration: int, rounds: int, headers_baseline: bool = False) -> dict:
    work, env, dbname = prepare_backend(backend, size, "verify")

    rng = random.Random(7)
    paths = work / "paths.txt"
    with paths.open("w") as fh:
        for _ in range(20_000):
            number = synthetic_number(rng.randrange(size)) if rng.random() < 0.5 else absent_number(rng.randrange(10**9))
            fh.write(f"/api/v1/verify?number={number}\n")

    app_port, bare_port, headers_port = free_port(), free_port(), free_port()
    procs = [gunicorn("wsgi:app", app_port, env), gunicorn("bench.bare_app:app", bare_port, env)]
    if headers_baseline:
        procs.append(gunicorn("bench.bare_app:app_with_headers", headers_port, env))
    try:
        wait_http(f"http://127.0.0.1:{app_port}/healthz")
        wait_http(f"http://127.0.0.1:{bare_port}/api/v1/verify?number=1")
        run_wrk(app_port, paths, 3)  # warm-up: page cache, connections, the directory
        run_wrk(bare_port, paths, 3)
        bare, ours, with_headers = [], [], []
        servers = [(bare_port, bare), (app_port, ours)]
        if headers_baseline:
            wait_http(f"http://127.0.0.1:{headers_port}/api/v1/verify?number=1")
            run_wrk(headers_port, paths, 3)
            servers.append((headers_port, with_headers))
        pids = {app_port: procs[0].pid, bare_port: procs[1].pid}
        if headers_baseline:
            pids[headers_port] = procs[2].pid
        for i in range(rounds):  # alternate which goes first: the host's speed drifts
            for port, runs in (servers if i % 2 == 0 else servers[::-1]):
                before = cpu_seconds(pids[port])
                run = run_wrk(port, paths, duration)
                after = cpu_seconds(pids[port])
                requests = run["rps"] * duration
                run["cpu_us"] = {k: v / requests * 1e6 for k, v in cpu_used(before, after).items()}
                runs.append(run)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        drop_backend(work, dbname)
    med = lambda runs, key: statistics.median(r[key] for r in runs)  # noqa: E731
    ratios = sorted(o["rps"] / b["rps"] for b, o in zip(bare, ours))
    headers_ratio = statistics.median(o["rps"] / h["rps"] for h, o in zip(with_headers, ours)) if with_headers else None
    return {
        "headers_ratio": headers_ratio,
        "ratio": statistics.median(ratios), "ratio_min": ratios[0], "ratio_max": ratios[-1],
        "backend": backend, "size": size,
        "bare_rps": med(bare, "rps"), "bare_p50": med(bare, "p50"), "bare_p99": med(bare, "p99"),
        "rps": med(ours, "rps"), "p50": med(ours, "p50"), "p99": med(ours, "p99"),
        "errors": sum(r["errors"] for r in ours),
        "bare_cpu": {k: statistics.median(r["cpu_us"][k] for r in bare) for k in bare[0]["cpu_us"]},
        "cpu": {k: statistics.median(r["cpu_us"][k] for r in ours) for k in ours[0]["cpu_us"]},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--backends", default="embedded,postgres-redis")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--headers-baseline", action="store_true",
                        help="also run the bare endpoint with the contract's headers (explains, not a headline)")
    args = parser.parse_args(argv)
    unknown = set(args.backends.split(",")) - {"embedded", "postgres-redis"}
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(sorted(unknown))}: choose from embedded, postgres-redis")
    if not shutil.which("wrk"):
        print("bench/verify needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    results = []
    for backend in args.backends.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"{backend}, {size:,} numbers …", flush=True)
            r = bench_one(backend, size, args.duration, args.rounds, args.headers_baseline)
            results.append(r)
            print(f"  bare   {r['bare_rps']:8.0f} req/s  p50 {r['bare_p50']:.2f} ms  p99 {r['bare_p99']:.2f} ms")
            print(f"  verify {r['rps']:8.0f} req/s  p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  "
                  f"ratio {r['ratio']:.2f}x (rounds {r['ratio_min']:.2f}–{r['ratio_max']:.2f})  non-2xx {r['errors']}",
                  flush=True)
            cpu = r["cpu"]
            print(f"  (explains: CPU per request, µs — bare: its workers {r['bare_cpu']['workers']:.0f}; verify: "
                  f"its workers {cpu['workers']:.0f}, PostgreSQL {cpu['PostgreSQL']:.0f}, Redis {cpu['Redis']:.0f}; "
                  f"the web tier alone {r['bare_cpu']['workers'] / cpu['workers']:.2f}x the bare endpoint's)", flush=True)
            if r["headers_ratio"] is not None:
                print(f"  (explains: against the bare endpoint with the contract's headers {r['headers_ratio']:.2f}x)",
                      flush=True)
    print("\nbackend          size         bare req/s  verify req/s  ratio  p50 ms (bare/verify)  p99 ms (bare/verify)")
    for r in results:
        print(f"{r['backend']:<16} {r['size']:>11,} {r['bare_rps']:>11.0f} {r['rps']:>13.0f}  {r['ratio']:.2f}x"
              f"  {r['bare_p50']:.2f}/{r['p50']:.2f}{'':>12}{r['bare_p99']:.2f}/{r['p99']:.2f}")
    by = {(r["backend"], r["size"]): r["ratio"] for r in results}
    for backend in args.backends.split(","):
        sizes = sorted(s for b, s in by if b == backend)
        if len(sizes) > 1:
            print(f"{backend}: ratio at {sizes[-1]:,} numbers / ratio at {sizes[0]:,}: "
                  f"{by[(backend, sizes[-1])] / by[(backend, sizes[0])]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

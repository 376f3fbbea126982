"""bench/import: a report-number file imported the way institutions' files go, against `psql \\copy`.

Two paths, each a process of its own, timed from its start to its exit (start-up included):

* ``cli``: ``flask --app wsgi import-numbers FILE --institution USCC --quarter 2026Q3``;
* ``job``: the portal's background import of a confirmed upload — on PostgreSQL + Redis an
  ``rq worker --burst rnr-imports`` (its work-horse runs ``workflows.jobs.rq_upload_job``), on the
  embedded default a process that runs ``workflows.jobs.run_upload_job`` on services built from
  its environment, as the web process's job thread does;

on two stacks: ``postgres-redis`` (a database made on BENCH_DATABASE_URL's server, Redis at
BENCH_REDIS_URL, a db the bench flushes) and ``embedded`` (SQLite + local shard files). The
baseline, measured in the same rounds, is ``psql \\copy`` of the same rows (normalised, with
institution, quarter, batch and time) into a bare table with the same primary key. Rounds
alternate the order; the figures are medians. Every import starts on an empty ``report_numbers``
(the baseline on an empty table too).

The repository's modules are compiled to bytecode before the rounds, as a deployment has them
(:func:`compile_sources`).

Peak RSS (VmHWM) is read from /proc for every process of the tree every 20 ms: the command or
worker, its parse sandbox (workflows/sandbox.py), its Bloom helper processes, RQ's work-horse.
Run with two file sizes (default 1,000,000, the per-file cap, and 100,000), equal peaks show
memory that does not grow with the file.

    .venv/bin/python -m bench.import_numbers [--sizes 1000000,100000] [--rounds 3]
        [--stacks postgres-redis,embedded] [--paths cli,job] [--capacity 2300000000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import BIN, ROOT

PG_SERVER = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
USCC_SEED = "91310000000000001"
QUARTER = "2026Q3"
POLL = 0.02


def make_csv(path: Path, n: int, tag: str) -> None:
    """``n`` distinct numbers (``tag`` keeps each file's numbers apart from the other files')."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("报告编号\n")
        for start in range(0, n, 100_000):
            fh.write("".join(f"{tag}{2020 + i % 5}-{i:08d}\n" for i in range(start, min(n, start + 100_000))))


def copy_rows(csv_path: Path, rows_path: Path) -> None:
    """The rows `psql \\copy` loads: the file's numbers normalised as the importer would."""
    from registry.numbers.normalize import normalize_number

    with csv_path.open(encoding="utf-8") as src, rows_path.open("w") as dst:
        next(src)
        for line in src:
            dst.write(f"{normalize_number(line.strip())},1,{QUARTER},1,2026-11-24 10:00:00\n")


# --- peak RSS of a process tree --------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def _hwm_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _label(pid: int, root: int, parent: int | None) -> str | None:
    """What the process is; None for a child between fork and exec (it still shows its parent's
    command line and memory)."""
    cmd = _cmdline(pid)
    if "sandbox_child" in cmd:
        return "parse sandbox"
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "forkserver" in cmd or "multiprocessing" in cmd:
        return "helper"
    if pid == root:
        return "rq worker" if "rq worker" in cmd else "command"
    if cmd == _cmdline(root) or not cmd:
        return "work-horse" if "rq worker" in cmd and parent == root else None
    return cmd.split()[-1][:30]


@dataclass
class TreeWatch:
    """Samples VmHWM of ``root`` and all its descendants until stopped; peaks by label, MiB."""

    root: int
    peaks: dict[str, float] = field(default_factory=dict)
    _hwm: dict[tuple[int, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            stack: list[tuple[int, int | None]] = [(self.root, None)]
            while stack:
                pid, parent = stack.pop()
                label = _label(pid, self.root, parent)
                hwm = _hwm_kib(pid)  # after the label: a process that exec'd since shows its own peak
                if hwm and label:
                    self._hwm[(pid, label)] = max(self._hwm.get((pid, label), 0), hwm)
                stack += [(c, pid) for c in _children(pid)]
            time.sleep(POLL)

    def stop(self) -> dict[str, float]:
        self._done.set()
        self._thread.join()
        for (_, label), kib in self._hwm.items():
            self.peaks[label] = max(self.peaks.get(label, 0), kib / 1024)
        return self.peaks


def timed(cmd: list[str], env: dict) -> tuple[float, dict[str, float], str]:
    """Run ``cmd``; seconds from start to exit, peak RSS by process, its output."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch = TreeWatch(proc.pid)
    out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    peaks = watch.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-3000:]}")
    return seconds, peaks, out


# --- a stack: a registry with one institution, its environment ----------------------------------
class Stack:
    def __init__(self, name: str, work: Path, capacity: int) -> None:
        self.name = name
        self.work = work / name
        self.work.mkdir()
        self.dbname = None
        self.env = {**os.environ, "INSTANCE_DIR": str(self.work), "SECRET_KEY": "bench", "AUDIT_KEY": "bench-audit", "BLOOM_CAPACITY": str(capacity),
                    "DATABASE_URL": "", "REDIS_URL": "", "BACKGROUND_INTERVAL": "0"}
        if name == "postgres-redis":
            from sqlalchemy import text

            from registry.infra.db import make_engine

            self.dbname = f"bench_import_{os.getpid()}"
            with make_engine(PG_SERVER, isolation_level="AUTOCOMMIT").connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'))
                c.execute(text(f'CREATE DATABASE "{self.dbname}"'))
            self.env["DATABASE_URL"] = PG_SERVER.rsplit("/", 1)[0] + "/" + self.dbname
            self.env["REDIS_URL"] = REDIS
            import redis

            redis.Redis.from_url(REDIS).flushdb()
        self._run_child(_prepare)

    def _run_child(self, fn, *args):
        """``fn(*args)`` in a forked child with this stack's environment (this process keeps no app state)."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            status = 1
            try:
                os.environ.clear()
                os.environ.update(self.env)
                result = fn(*args)
                os.write(write, repr(result).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        with os.fdopen(read) as fh:
            out = fh.read()
        _, status = os.waitpid(pid, 0)
        if status:
            raise RuntimeError(f"{fn.__name__} failed in the child")
        return eval(out) if out else None  # noqa: S307 - our own child's repr

    def empty(self) -> None:
        self._run_child(_empty_numbers)

    def queue_upload(self, path: Path) -> tuple[int, str]:
        return self._run_child(_queue_upload, str(path))

    def close(self) -> None:
        if self.dbname:
            from sqlalchemy import text

            from registry.infra.db import make_engine

            with make_engine(PG_SERVER, isolation_level="AUTOCOMMIT").connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'))


def _services():
    from registry.infra.settings import finish_settings, load_settings
    from workflows.services import build_services

    return build_services(finish_settings(load_settings()))


def _prepare() -> None:
    from sqlalchemy import select

    from registry.infra.migrate import upgrade
    from registry.institutions.authorities import seed_authorities
    from registry.institutions.models import Authority
    from registry.institutions.service import create_institution
    from registry.numbers.normalize import make_uscc

    services = _services()
    upgrade(services.engine)
    with services.sessions() as s:
        seed_authorities(s)
        authority = s.scalar(select(Authority).where(Authority.code == "09"))
        create_institution(s, uscc=make_uscc(USCC_SEED), name="基准机构", review_authority=authority)
        s.commit()
    services.wait_until_trusted()
    services.close()


def _empty_numbers() -> None:
    from sqlalchemy import text

    services = _services()
    with services.engine.begin() as c:
        c.execute(text("DELETE FROM report_numbers") if services.engine.dialect.name == "sqlite"
                  else text("TRUNCATE report_numbers"))
    services.close()


def _queue_upload(path: str) -> tuple[int, str]:
    """A portal upload of ``path``, checked and confirmed as the portal leaves it for a job."""
    from registry.institutions.models import Institution
    from registry.numbers.normalize import make_uscc
    from registry.numbers.quarters import Quarter
    from sqlalchemy import select

    services = _services()
    with services.sessions() as s:
        iid = s.scalar(select(Institution.id).where(Institution.uscc == make_uscc(USCC_SEED)))
    with open(path, "rb") as fh:
        upload = services.uploads.store(fh, file_name=Path(path).name, institution_id=iid,
                                        quarter=Quarter.parse(QUARTER), uploaded_by="bench")
    services.uploads.transition(upload.id, "checking", "ready", report={})
    services.uploads.transition(upload.id, "ready", "queued")
    confirmed = services.clock()
    if services.redis is not None:
        services.jobs.enqueue("import", upload.id, confirmed_at=confirmed)
    services.close()
    return upload.id, confirmed.isoformat()


# --- the runs -------------------------------------------------------------------------------------
def run_cli(stack: Stack, path: Path):
    from registry.numbers.normalize import make_uscc

    stack.empty()
    return timed([str(BIN / "flask"), "--app", "wsgi", "import-numbers", str(path), "--institution",
                  make_uscc(USCC_SEED), "--quarter", QUARTER], stack.env)


def run_job(stack: Stack, path: Path):
    stack.empty()
    upload_id, confirmed = stack.queue_upload(path)
    if stack.name == "postgres-redis":
        from workflows.jobs import QUEUE_NAME

        cmd = [str(BIN / "rq"), "worker", "--burst", "--url", REDIS, "--name", f"bench-{upload_id}", QUEUE_NAME]
    else:
        code = ("import datetime as dt; from workflows.jobs import run_upload_job; "
                "from workflows.services import services_from_environment; "
                f"s = services_from_environment(); run_upload_job(s, 'import', {upload_id}, "
                f"dt.datetime.fromisoformat({confirmed!r})); "
                f"u = s.uploads.get({upload_id}); assert u.state == 'done', (u.state, u.error)")
        cmd = [sys.executable, "-c", code]
    result = timed(cmd, stack.env)
    state = stack._run_child(_upload_state, upload_id)
    if state != "done":
        raise RuntimeError(f"the job left upload {upload_id} {state}")
    return result


def _upload_state(upload_id: int) -> str:
    services = _services()
    state = services.uploads.get(upload_id).state
    services.close()
    return state


def psql_copy(dbname: str, rows_path: Path) -> tuple[float, dict, str]:
    setup = (
        "DROP TABLE IF EXISTS bare_numbers; CREATE TABLE bare_numbers (number varchar(64) NOT NULL, "
        "institution_id integer NOT NULL, quarter varchar(6) NOT NULL, batch_id bigint NOT NULL, "
        "registered_at timestamp NOT NULL, withdrawn_at timestamp, withdraw_reason varchar(500), "
        "PRIMARY KEY (number, institution_id));"
    )
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-c", setup], check=True)
    return timed(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-c",
                  f"\\copy bare_numbers (number, institution_id, quarter, batch_id, registered_at) FROM '{rows_path}' CSV"],
                 dict(os.environ))


def compile_sources() -> None:
    """The repository's modules compiled to bytecode first, as a deployment installs them: the
    commands measured then start as in production, even where ``PYTHONDONTWRITEBYTECODE`` keeps
    Python from caching what it compiled (on this host that was 0.25 s of each command's start)."""
    import compileall

    for package in ("portal", "registry", "importers", "workflows"):
        compileall.compile_dir(str(ROOT / package), quiet=1)
    compileall.compile_file(str(ROOT / "wsgi.py"), quiet=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stacks", default="postgres-redis,embedded")
    parser.add_argument("--paths", default="cli,job")
    parser.add_argument("--capacity", type=int, default=0,
                        help="BLOOM_CAPACITY of the stacks (default 10 × the largest size; production: 2300000000)")
    args = parser.parse_args(argv)
    if not shutil.which("psql"):
        print("bench/import needs psql", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    stacks_wanted = args.stacks.split(",")
    paths = args.paths.split(",")
    runners = {"cli": run_cli, "job": run_job}
    compile_sources()
    print(f"bench/import: {time.strftime('%Y-%m-%d %H:%M:%S')} load {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cores", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    stacks: dict[str, Stack] = {}
    results: dict[tuple, list] = {}
    try:
        for name in stacks_wanted:
            stacks[name] = Stack(name, work, capacity=args.capacity or max(sizes) * 10)
        bare_db = stacks["postgres-redis"].dbname if "postgres-redis" in stacks else None
        for size in sizes:
            for r in range(args.rounds):
                rows_path = work / "rows.csv"
                make_csv(rows_path.with_suffix(".in"), size, tag=f"B{r}S")
                copy_rows(rows_path.with_suffix(".in"), rows_path)
                runs = [("copy", None, None)] + [(p, s, runners[p]) for s in stacks_wanted for p in paths]
                if r % 2:
                    runs.reverse()
                for path, stack_name, runner in runs:
                    if path == "copy":
                        if bare_db is None:
                            continue
                        result = psql_copy(bare_db, rows_path)
                    else:
                        # each run its own numbers (never a repeated file), as many and as long as the copy's
                        run_path = work / f"{path}-{stack_name}-{size}-{r}.csv"
                        make_csv(run_path, size, tag=f"{path[0]}{stack_name[0]}{r}S".upper())
                        result = runner(stacks[stack_name], run_path)
                        run_path.unlink()
                    results.setdefault((size, path, stack_name), []).append(result)
                    seconds, peaks, _ = result
                    print(f"  {size:>9,} round {r + 1} {path:<4} {stack_name or 'bare table':<15} {seconds:7.2f} s  "
                          f"{size / seconds:>9,.0f}/s  peak RSS " +
                          ", ".join(f"{k} {v:.0f}" for k, v in sorted(peaks.items())) + " MiB", flush=True)
        print(f"\nload after: {os.getloadavg()[0]:.2f}\n")
        print(f"{'numbers':>9} {'path':<5} {'stack':<15} {'median s':>8} {'numbers/s':>10} {'× copy':>7}  peak RSS MiB (max over rounds)")
        for size in sizes:
            copy = results.get((size, "copy", None))
            copy_s = statistics.median(s for s, _, _ in copy) if copy else None
            for key, runs in results.items():
                if key[0] != size:
                    continue
                _, path, stack_name = key
                med = statistics.median(s for s, _, _ in runs)
                peaks: dict[str, float] = {}
                for _, p, _ in runs:
                    for k, v in p.items():
                        peaks[k] = max(peaks.get(k, 0), v)
                ratio = f"{copy_s / med:6.2f}x" if copy_s else "      -"
                print(f"{size:>9,} {path:<5} {stack_name or 'bare table':<15} {med:8.2f} {size / med:>10,.0f} {ratio}  " +
                      ", ".join(f"{k} {v:.0f}" for k, v in sorted(peaks.items())))
    finally:
        for stack in stacks.values():
            stack.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

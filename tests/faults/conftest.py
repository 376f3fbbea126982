"""Fault drills: real processes broken as production would break them (docs/faults.md).

Never touches the shared servers on 5432 and 6379: the session starts its own PostgreSQL cluster
(``initdb``/``pg_ctl``, as the ``postgres`` user when run as root) and its own Redis, on free
ports, and every drill gets its own database (copied from a migrated template) and Redis db.
A drill that stops, kills or pauses a server starts it again before the next drill begins.
"""
from __future__ import annotations

import glob
import http.cookiejar
import itertools
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import text

from bench.common import free_port, wait_http
from registry.infra.db import make_engine, make_session_factory
from registry.infra.migrate import upgrade
from registry.institutions.authorities import seed_authorities
from tests.conftest import REQUIRE_BACKENDS

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _missing(what: str) -> None:
    if REQUIRE_BACKENDS:
        pytest.fail(f"REQUIRE_BACKENDS=1 but {what} is missing: the fault drills need it")
    pytest.skip(f"fault drills skipped: {what} is missing")


# --- PostgreSQL: a cluster of the drills' own ------------------------------------------------
class PgCluster:
    """One throw-away cluster: ``start``, ``stop(mode)``; ``new_database()`` gives a migrated one."""

    def __init__(self, bindir: str, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._serial = itertools.count()
        self._template: str | None = None

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_postgres, f"{self.bindir}/{tool}", *args], capture_output=True, text=True,
                              timeout=timeout, check=True, cwd=self.root)

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync",
                  "--locale=C.UTF-8", timeout=120)
        self._configure()

    def init_replica_of(self, primary: "PgCluster") -> None:
        """A streaming replica of ``primary`` (running): a base backup with ``-R`` (standby.signal,
        primary_conninfo), on this cluster's own port. initdb's pg_hba.conf admits replication
        connections from 127.0.0.1 (``-A trust``); wal_level is ``replica`` by default."""
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                  "-D", str(self.data), "-R", "-X", "stream", "-c", "fast", "--no-sync", timeout=120)
        self._configure()

    def _configure(self) -> None:
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{self.root}'\n"
                       "fsync = off\nfull_page_writes = off\nmax_connections = 60\nshared_buffers = 32MB\n")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start",
                  timeout=90)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", timeout=90)

    def running(self) -> bool:
        return subprocess.run([*self.as_postgres, f"{self.bindir}/pg_ctl", "-D", str(self.data), "status"],
                              capture_output=True, cwd=self.root).returncode == 0

    def ensure_running(self) -> None:
        if not self.running():
            self.start()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A migrated database with the authorities seeded (a copy of one migrated template)."""
        admin = make_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            if self._template is None:
                with admin.connect() as c:
                    c.execute(text('CREATE DATABASE "drill_template"'))
                engine = make_engine(self.url("drill_template"))
                upgrade(engine)
                with make_session_factory(engine)() as session:
                    seed_authorities(session)
                    session.commit()
                engine.dispose()
                self._template = "drill_template"
            name = f"drill_{next(self._serial)}"
            with admin.connect() as c:
                c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self._template}"'))
        finally:
            admin.dispose()
        return self.url(name)


def new_cluster() -> PgCluster:
    """A cluster object in a fresh temporary directory (owned by ``postgres`` when run as root),
    not initialised yet; skips (fails with REQUIRE_BACKENDS=1) without PostgreSQL's binaries."""
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not bindirs or not os.path.exists(f"{bindirs[-1]}/initdb"):
        _missing("PostgreSQL's initdb (/usr/lib/postgresql/*/bin)")
    root = Path(tempfile.mkdtemp(prefix="rnr-faults-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    return PgCluster(bindirs[-1], root)


def remove_cluster(cluster: PgCluster) -> None:
    try:
        if cluster.running():
            cluster.stop("immediate")
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = new_cluster()
    cluster.init()
    cluster.start()
    yield cluster
    remove_cluster(cluster)


# --- Redis: a server of the drills' own -------------------------------------------------------
class RedisServer:
    """``start`` (always empty: no snapshot, no AOF), ``stop``, ``pause`` (SIGSTOP), ``resume``."""

    def __init__(self, root: Path, extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.extra = extra  # more command-line settings (a replica's --replicaof, a user)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.paused = False
        self._dbs = itertools.count(1)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root), "--daemonize", "no", "--logfile", str(self.root / "redis.log"), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()
            self.proc.kill()  # as a crash: whatever it held is gone (it saves nothing anyway)
            self.proc.wait(timeout=10)
        self.proc = None

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.paused and self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def ensure_running(self) -> None:
        self.resume()
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def new_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/{next(self._dbs) % 16}"


@pytest.fixture(scope="session")
def redis_server():
    if not shutil.which("redis-server"):
        _missing("redis-server")
    root = Path(tempfile.mkdtemp(prefix="rnr-faults-redis-"))
    server = RedisServer(root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


# --- a full disk ---------------------------------------------------------------------------------
#: a process under a file-size limit writes no bytecode: a ``.pyc`` cut short at the limit would be
#: renamed into place all the same (a short write is not an error) and break every later import
LIMITED_ENV = {"PYTHONDONTWRITEBYTECODE": "1"}


def limit_file_size(limit: int):
    """A ``preexec_fn``: the process may write files up to ``limit`` bytes (RLIMIT_FSIZE), as on a
    disk that is full; a write past it fails with EFBIG (SIGXFSZ ignored) as it would with ENOSPC."""
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


# --- one drill's registry ---------------------------------------------------------------------
@dataclass
class Drill:
    """The settings of one drill's registry (own database, own Redis db or local Bloom files)."""

    env: dict
    tmp: Path
    pg: PgCluster
    redis: RedisServer | None
    procs: list = field(default_factory=list)
    servers: list = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return self.env["DATABASE_URL"]

    def engine(self):
        return make_engine(self.database_url)

    def scalar(self, sql: str, **params):
        engine = self.engine()
        try:
            with engine.connect() as c:
                return c.execute(text(sql), params).scalar()
        finally:
            engine.dispose()

    def pg_scalar(self, sql: str, **params):
        """A query on the cluster's own ``postgres`` database."""
        engine = make_engine(self.pg.url())
        try:
            with engine.connect() as c:
                return c.execute(text(sql), params).scalar()
        finally:
            engine.dispose()

    def flask(self, *args: str, timeout: float = 180, file_size: int | None = None,
              **kwargs) -> subprocess.CompletedProcess:
        """A CLI command; ``file_size``: it may write files of that many bytes at most (a full disk)."""
        env = self.env
        if file_size is not None:
            env, kwargs["preexec_fn"] = {**env, **LIMITED_ENV}, limit_file_size(file_size)
        return subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout, **kwargs)

    def flask_popen(self, *args: str, **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen([str(BIN / "flask"), "--app", "wsgi", *args], cwd=ROOT, env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def gunicorn(self, workers: int = 2, **kwargs) -> "Gunicorn":
        server = Gunicorn(self, workers, **kwargs)
        self.servers.append(server)
        return server

    def institution(self) -> str:
        """A new institution; its USCC."""
        from tests.builders import make_institution

        engine = self.engine()
        try:
            with make_session_factory(engine)() as session:
                return make_institution(session).uscc
        finally:
            engine.dispose()

    def account(self, uscc: str) -> tuple[str, str]:
        """A portal account of the institution: (username, password)."""
        from registry.accounts.accounts import AccountService

        username = f"drill-{uscc.lower()}"
        engine = self.engine()
        try:
            AccountService(sessions=make_session_factory(engine)).create(
                username=username, password=DRILL_PASSWORD, role="institution", institution_uscc=uscc)
        finally:
            engine.dispose()
        return username, DRILL_PASSWORD

    def upload_row(self, upload_id: int) -> dict:
        engine = self.engine()
        try:
            with engine.connect() as c:
                return dict(c.execute(text("SELECT * FROM uploads WHERE id = :i"), {"i": upload_id}).mappings().one())
        finally:
            engine.dispose()

    def number_file(self, name: str, numbers: list[str]) -> Path:
        path = self.tmp / name
        path.write_text("\n".join(numbers) + "\n")
        return path

    def import_numbers(self, path: Path, uscc: str, quarter: str = "2026Q3") -> subprocess.CompletedProcess:
        return self.flask("import-numbers", str(path), "--institution", uscc, "--quarter", quarter)

    def integrity(self) -> dict:
        """Row counts, and what must never exist: a batch without its numbers, numbers without
        their batch, a number twice in one batch."""
        engine = self.engine()
        try:
            with engine.connect() as c:
                q = lambda sql: c.execute(text(sql)).scalar()  # noqa: E731
                return {
                    "batches": q("SELECT count(*) FROM batches"),
                    "numbers": q("SELECT count(*) FROM report_numbers"),
                    "empty_batches": q("SELECT count(*) FROM batches b WHERE NOT EXISTS "
                                       "(SELECT 1 FROM report_numbers r WHERE r.batch_id = b.id)"),
                    "orphans": q("SELECT count(*) FROM report_numbers r WHERE NOT EXISTS "
                                 "(SELECT 1 FROM batches b WHERE b.id = r.batch_id)"),
                    "duplicates": q("SELECT count(*) FROM (SELECT number, institution_id FROM report_numbers "
                                    "GROUP BY number, institution_id HAVING count(*) > 1) d"),
                }
        finally:
            engine.dispose()


@pytest.fixture
def drill(pg_cluster, redis_server, tmp_path, request):
    """A fresh registry on the drills' servers; ``@pytest.mark.parametrize('drill', ['local'],
    indirect=True)`` gives one with local Bloom files instead of Redis."""
    pg_cluster.ensure_running()
    redis_server.ensure_running()
    store = getattr(request, "param", "redis")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEST_", "REQUIRE_"))}
    env.update({
        "DATABASE_URL": pg_cluster.new_database(),
        "REDIS_URL": redis_server.new_url() if store == "redis" else "",
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "SECRET_KEY": "fault-drills",
        "AUDIT_KEY": "fault-drills-audit",
        "BLOOM_CAPACITY": "200000",
        "BLOOM_SHARDS": "2",
        "BACKGROUND_INTERVAL": "0.5",
        "RATELIMIT_VERIFY": "10000000/minute",
        "PYTHONUNBUFFERED": "1",
    })
    if env["REDIS_URL"]:
        import redis

        client = redis.Redis.from_url(env["REDIS_URL"])
        client.flushdb()
        client.close()
    d = Drill(env=env, tmp=tmp_path, pg=pg_cluster, redis=redis_server if store == "redis" else None)
    yield d
    for server in d.servers:
        server.stop()
    for proc in d.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    pg_cluster.ensure_running()
    redis_server.ensure_running()


# --- a signed-in portal user over HTTP ----------------------------------------------------------
DRILL_PASSWORD = "fault-drill-password-1"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 3xx is an answer of its own here (its Location is checked)


@dataclass
class Answer:
    status: int
    location: str
    body: str
    seconds: float


class Browser:
    """A portal user over real HTTP: cookies kept, redirects not followed, forms with their CSRF
    token. ``twin()`` is another connection with the same session (a second tab, a double click)."""

    def __init__(self, base: str, jar: http.cookiejar.CookieJar | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        for cookie in jar or ():
            self.jar.set_cookie(cookie)
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirects)

    def twin(self) -> "Browser":
        return Browser(self.base, self.jar)

    def request(self, path: str, data: bytes | None = None, content_type: str | None = None,
                timeout: float = 60) -> Answer:
        request = urllib.request.Request(self.base + path, data=data)
        if content_type:
            request.add_header("Content-Type", content_type)
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=timeout) as r:
                status, headers, body = r.status, r.headers, r.read()
        except urllib.error.HTTPError as exc:
            status, headers, body = exc.code, exc.headers, exc.read()
        for cookie in self.jar:
            cookie.secure = False  # Secure cookies (TLS at the proxy in production) over the drill's plain HTTP
        location = (headers.get("Location") or "").replace(self.base, "")
        return Answer(status, location, body.decode("utf-8", "replace"), time.monotonic() - started)

    def csrf(self, path: str) -> str:
        page = self.request(path)
        match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.body) or re.search(
            r'name="csrf_token" value="([^"]+)"', page.body)
        assert match, f"no CSRF token on {path}: {page.status} {page.body[:300]}"
        return match.group(1)

    def post(self, path: str, fields: dict, *, token_from: str | None = None, token: str | None = None,
             timeout: float = 60) -> Answer:
        fields = {"csrf_token": token or self.csrf(token_from or path), **fields}
        return self.request(path, urllib.parse.urlencode(fields).encode(), "application/x-www-form-urlencoded",
                            timeout=timeout)

    def post_file(self, path: str, fields: dict, name: str, content: bytes, field: str = "file",
                  timeout: float = 60) -> Answer:
        fields = {"csrf_token": self.csrf(path), **fields}
        boundary = f"drill{time.monotonic_ns()}"
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
                     f'Content-Type: application/octet-stream\r\n\r\n'.encode() + content + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request(path, body, f"multipart/form-data; boundary={boundary}", timeout=timeout)

    def login(self, username: str, password: str) -> None:
        answer = self.post("/login", {"username": username, "password": password})
        assert answer.status == 302, (answer.status, answer.body[:500])

    def upload(self, content: bytes, name: str = "numbers.csv", quarter: str = "2026Q3") -> int:
        """Upload a number file; the upload's id (its status page is where it went)."""
        answer = self.post_file("/institution/upload", {"quarter": quarter}, name, content)
        assert answer.status == 303 and "/institution/uploads/" in answer.location, (answer.status, answer.body[:800])
        return int(answer.location.rsplit("/", 1)[1])


def all_at_once(calls: list) -> list:
    """Run the calls on threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i: int, call) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - an unanswered request is a finding
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    return results


# --- gunicorn and a verify load -----------------------------------------------------------------
class Gunicorn:
    def __init__(self, drill: Drill, workers: int, *, preexec_fn=None, extra_env: dict | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = drill.tmp / f"gunicorn-{self.port}.log"
        self._log_file = open(self.log, "w")
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{self.port}", "--timeout", "30",
             "--graceful-timeout", "5", "--log-level", "warning", "wsgi:app"],
            cwd=ROOT, env={**drill.env, **(extra_env or {})}, stdout=subprocess.DEVNULL,
            stderr=self._log_file, preexec_fn=preexec_fn)
        try:
            wait_http(f"{self.base}/healthz", timeout=60)
        except Exception:
            self.stop()
            raise

    def workers(self) -> set[int]:
        """The pids of the master's worker processes."""
        pids = set()
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                with open(stat) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                pids.add(int(stat.split("/")[2]))
        return pids

    def verify(self, number: str, institution: str | None = None, timeout: float = 15) -> tuple[int, dict, float]:
        """(status, JSON body, seconds) of one verification on a fresh connection."""
        url = f"{self.base}/api/v1/verify?number={number}"
        if institution:
            url += f"&institution={institution}"
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                status, body = r.status, r.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        return status, json.loads(body or b"{}"), time.monotonic() - started

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log_file.close()


class Load:
    """Verify requests in a loop from a thread, alternating registered and never-registered
    numbers; every answer is kept as (phase when asked, number, registered, HTTP status, verdict
    status or error, seconds)."""

    def __init__(self, server: Gunicorn, registered: list[str], absent: list[str]) -> None:
        self.server = server
        self.registered = registered
        self.absent = absent
        self.phase = "before"
        self.answers: list[tuple] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        for i in itertools.count():
            if self._stop.is_set():
                return
            registered = i % 2 == 0
            pool = self.registered if registered else self.absent
            number = pool[(i // 2) % len(pool)]
            started = time.monotonic()
            try:
                phase = self.phase
                status, body, seconds = self.server.verify(number)
                self.answers.append((phase, number, registered, status, body.get("status") or body.get("error"),
                                     seconds))
            except Exception as exc:  # noqa: BLE001 - an unanswered request is a finding
                self.errors.append(f"{self.phase} {number}: {exc.__class__.__name__}: {exc} "
                                   f"after {time.monotonic() - started:.2f}s")

    def in_phase(self, phase: str) -> list[tuple]:
        return [a for a in self.answers if a[0] == phase]

    def wait_answers(self, phase: str, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.in_phase(phase)) < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def check(self, *, bound: float, allow_503: bool = True) -> dict:
        """Every request answered within ``bound`` seconds, 200 or 503; no registered number ever
        ``not_found``; no never-registered one ``found``. Returns figures per phase."""
        assert not self.errors, self.errors[:5]
        assert self.answers
        figures: dict[str, dict] = {}
        for phase, number, registered, status, verdict, seconds in self.answers:
            f = figures.setdefault(phase, {"answers": 0, "503": 0, "max_seconds": 0.0})
            f["answers"] += 1
            f["max_seconds"] = max(f["max_seconds"], round(seconds, 3))
            assert seconds <= bound, (phase, number, status, seconds)
            assert status in ((200, 503) if allow_503 else (200,)), (phase, number, status, verdict)
            if status == 503:
                f["503"] += 1
                continue
            if registered:
                assert verdict == "found", (phase, number, verdict)
            else:
                assert verdict == "not_found", (phase, number, verdict)
        return figures


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


class Checked(list):
    """What :func:`all_correct` found: true when every answer was right; else false, holding the
    first wrong answer (number, HTTP status, answer), which a failed ``assert`` then shows."""

    def __bool__(self) -> bool:
        return len(self) == 0


def all_correct(server: Gunicorn, registered: list[str], absent: list[str], rounds: int = 2) -> Checked:
    """Every number answered right, on fresh connections (so by every worker, likely)."""
    for _ in range(rounds):
        for numbers, expected in ((registered, "found"), (absent, "not_found")):
            for number in numbers:
                status, body, _ = server.verify(number)
                if status != 200 or body.get("status") != expected:
                    return Checked([(number, status, body)])
    return Checked()

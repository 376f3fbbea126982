"""Shared fixtures: real backends (SQLite always; PostgreSQL and Redis when configured).

`TEST_DATABASE_URL` / `TEST_REDIS_URL` name the servers; each run creates its own PostgreSQL
database (dropped at the end) and uses the Redis db the URL names (flushed). With
`REQUIRE_BACKENDS=1` a missing backend fails the run instead of skipping; `REQUIRE_BROWSER=1` does
the same for Chromium.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from registry.institutions.authorities import seed_authorities
from registry.infra.db import make_engine, make_session_factory
from registry.infra.migrate import upgrade
from registry.schema import metadata

REQUIRE_BACKENDS = os.environ.get("REQUIRE_BACKENDS") == "1"
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "")

_skipped_notices: set[str] = set()


def missing_backend(what: str, variable: str) -> None:
    """Skip (or, when the backend is required, fail) a test that needs an absent backend."""
    message = f"{what} tests skipped: set {variable} to run them"
    if REQUIRE_BACKENDS:
        pytest.fail(f"REQUIRE_BACKENDS=1 but {variable} is not set or {what} is unreachable")
    _skipped_notices.add(message)
    pytest.skip(message)


_by_backend: dict[str, dict[str, int]] = {}


_SERVER_FIXTURES = {"redis_url", "redis_client", "postgres_database", "postgres_server_url"}
_uses_servers: set[str] = set()


def pytest_collection_modifyitems(items):
    for item in items:  # tests without a backend parameter that still need PostgreSQL or Redis
        if _SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            _uses_servers.add(item.nodeid)


def _backend_of(nodeid: str) -> str:
    params = nodeid.rpartition("[")[2] if nodeid.endswith("]") else ""
    if "postgres" in params or "redis" in params or (not params and nodeid in _uses_servers):
        return "PostgreSQL/Redis"
    if "sqlite" in params or "local" in params:
        return "SQLite/local"
    return "backend-independent"


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        tally = _by_backend.setdefault(_backend_of(report.nodeid), {})
        tally[report.outcome] = tally.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    for backend in sorted(_by_backend):
        tally = _by_backend[backend]
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(tally.items()))
        terminalreporter.write_line(f"tests on {backend}: {counts}")
    for notice in sorted(_skipped_notices):
        terminalreporter.write_line(f"NOTICE: {notice}", yellow=True)


# --- PostgreSQL -----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server_url():
    if not TEST_DATABASE_URL:
        missing_backend("PostgreSQL", "TEST_DATABASE_URL")
    return TEST_DATABASE_URL


def _admin_engine(server_url: str):
    return make_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=None)


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url):
    """A database of this run's own, migrated to head; dropped at the end."""
    name = f"rnr_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = make_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - turn any connection failure into skip/fail
        admin.dispose()
        missing_backend(f"PostgreSQL ({exc.__class__.__name__})", "TEST_DATABASE_URL")
    url = make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """A migrated SQLite file copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "registry.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def _empty_tables(engine) -> None:
    names = [t.name for t in reversed(metadata.sorted_tables)]
    extra = [n for n in _all_table_names(engine) if n not in names and n != "alembic_version" and not n.startswith("report_numbers_p")]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("TRUNCATE " + ", ".join(f'"{n}"' for n in names + extra) + " RESTART IDENTITY CASCADE")
        else:
            for n in extra + names:
                conn.exec_driver_sql(f'DELETE FROM "{n}"')


def _all_table_names(engine) -> list[str]:
    from sqlalchemy import inspect

    return inspect(engine).get_table_names()


def database_url_for(kind: str, request, tmp_path: Path) -> str:
    if kind == "sqlite":
        path = tmp_path / "registry.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_database")
    engine = make_engine(url)
    _empty_tables(engine)
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path):
    """A migrated, empty database on each backend."""
    return database_url_for(request.param, request, tmp_path)


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    with make_session_factory(engine)() as session:
        seed_authorities(session)
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine):
    with make_session_factory(engine)() as session:
        yield session


# --- Redis ----------------------------------------------------------------------------------
@pytest.fixture
def redis_url():
    if not TEST_REDIS_URL:
        missing_backend("Redis", "TEST_REDIS_URL")
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing_backend(f"Redis ({exc.__class__.__name__})", "TEST_REDIS_URL")
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def redis_client(redis_url):
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    yield client
    client.close()


# --- whole stacks: SQLite + local Bloom files, PostgreSQL + Redis ---------------------------
TLOG_TEST_KEY = "PRIVATE+KEY+registry.localhost/tlog+a1763da1+AQV38jww8jPSFE8zpITiHPpG8CfyPll5/46DC08zPzEe"  # tests only

@pytest.fixture(params=["sqlite-local", "postgres-redis"])
def stack(request, tmp_path):
    """Settings for one full stack, as `create_app(config=...)` takes them."""
    kind = request.param
    config = {
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "FILES_DIR": str(tmp_path / "instance" / "files"),
        "SECRET_KEY": "test-secret",
        "AUDIT_KEY": "test-audit-key",  # as production sets it (without it /readyz says degraded on PostgreSQL)
        "BLOOM_CAPACITY": 200_000,
        "BLOOM_SHARDS": 4,
        "TESTING": True,
        "BACKGROUND_INTERVAL": 0,
        # high enough never to trip in functional tests; rate-limit tests set their own
        "RATELIMIT_VERIFY": "100000/minute",
        "RATELIMIT_COMPLAINT": "100000/minute",
        # the demo's setting, so the existing tests sign regulators and admins in with a password;
        # the two-factor tests turn it on
        "REQUIRE_2FA": False,
    }
    if kind == "sqlite-local":
        config["DATABASE_URL"] = database_url_for("sqlite", request, tmp_path)
        config["REDIS_URL"] = ""
    else:
        config["DATABASE_URL"] = database_url_for("postgres", request, tmp_path)
        config["REDIS_URL"] = request.getfixturevalue("redis_url")
        # production sets the log's signing key on its integrator (SQLite generates one in instance/)
        config["TLOG_SIGNING_KEY"] = TLOG_TEST_KEY
    config["STACK"] = kind
    return config


# --- e-mail ---------------------------------------------------------------------------------
@pytest.fixture
def mailbox():
    """A real SMTP server on a free loopback port; ``mail_config(mailbox)`` points an app at it."""
    from tests.mailbox import start_smtp

    controller, box = start_smtp()
    yield box
    controller.stop()


def mail_config(box) -> dict:
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": box.port, "MAIL_FROM": "registry@test.example"}


# --- browser --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium_path():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        if REQUIRE_BROWSER:
            pytest.fail("REQUIRE_BROWSER=1 but no chromium on PATH")
        _skipped_notices.add("browser tests skipped: install Debian's chromium to run them")
        pytest.skip("no chromium")
    return path


# --- the app --------------------------------------------------------------------------------
@pytest.fixture
def app(stack):
    from portal import create_app

    app = create_app(stack)
    reg = app.extensions["registry"]
    assert reg.wait_until_trusted(), reg.bloom.status()
    yield app
    reg.close()


@pytest.fixture
def reg(app):
    return app.extensions["registry"]


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()

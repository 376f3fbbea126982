"""Engine and session construction; the only place that knows backend-specific connection setup."""
from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


# Address space only: the OS page cache backs it, shared by every process. As large as SQLite
# allows (it lowers the value to its build's maximum, 2 GiB for Debian's and Python's builds): at
# 1 GiB a 10 M-number registry (1.2 GB) took a read() for each page past the first GiB.
SQLITE_MMAP_BYTES = 1 << 36
SQLITE_CACHE_KIB = 32 * 1024


def make_engine(url: str, **kwargs) -> Engine:
    """Build an engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys.

    Errors never quote a statement's parameters (``hide_parameters``): they hold complainants'
    names and contacts, and error messages end up in logs.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # read pages through a shared memory map instead of a read() call each, and keep more
            # of them cached per connection: lookups and query-log inserts hit random B-tree pages
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            cur.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cur.close()

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    connect_args = kwargs.pop("connect_args", {})
    connect_args.setdefault("connect_timeout", 5)
    return create_engine(url, connect_args=connect_args, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"

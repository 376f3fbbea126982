"""Per-thread read connections of one engine: the verification read path's own connections
(the primary's, and each read replica's: registry/verification/replicas.py)."""
from __future__ import annotations

import datetime as dt
import os

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from registry.infra.forklocal import ForkLocal


def utc(value) -> dt.datetime | None:
    """A timestamp a read statement gave, as aware UTC: SQLite gives text, PostgreSQL naive
    timestamps (the columns hold UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc)


class Unavailable(RuntimeError):
    """A backend the answer needs is down."""


class _Reader:
    """A thread's read connection. It goes with its thread: a thread that ends (a dev server's
    request thread, a shrinking thread pool) closes it, in the process that opened it only."""

    __slots__ = ("conn", "driver", "cursor", "_pid")

    def __init__(self, conn, driver, cursor) -> None:
        self.conn = conn  # sqlalchemy Connection, autocommit
        self.driver = driver  # its driver (DBAPI) connection
        self.cursor = cursor  # a cursor of that, reused
        self._pid = os.getpid()

    def close(self, broken: bool = False) -> None:
        if self._pid != os.getpid():  # a forked child must not close its parent's connection
            return
        self._pid = None
        steps = (self.cursor.close, self.conn.invalidate, self.conn.close) if broken else (
            self.cursor.close, self.conn.close)
        for step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is gone anyway
                pass

    def __del__(self) -> None:
        self.close()


class ReadConnections:
    """One autocommit connection per thread on ``engine`` (no pool checkout, no liveness ping, no
    open transaction), its statements prepared by the driver; a forked child makes its own."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._local = ForkLocal()

    def fetch(self, statement: str, params: tuple) -> list[tuple]:
        """Run one read statement on this thread's connection; its rows. A connection that broke
        since its last use is replaced once before giving up with :class:`Unavailable`."""
        dialect = self.engine.dialect
        for attempt in (1, 2):
            reader = self.reader()
            try:
                reader.cursor.execute(statement, params)
                return reader.cursor.fetchall()
            except dialect.loaded_dbapi.Error as exc:
                dropped = dialect.is_disconnect(exc, reader.driver, reader.cursor)
                self.close(broken=True)
                if attempt == 1 and dropped:
                    continue
                raise Unavailable("the registry database is unreachable") from exc
        raise AssertionError("unreachable")

    def reader(self) -> _Reader:
        slots = self._local.slots
        reader = getattr(slots, "reader", None)
        if reader is None:
            try:
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                driver = conn.connection.driver_connection
                if self.engine.dialect.name == "postgresql":
                    conn.detach()  # its session setting below must not go back into the pool
                    # The lookup runs as a prepared statement over a hash-partitioned table.
                    # PostgreSQL judges a custom plan (pruned while planning) cheaper than the
                    # generic one (pruned at execution) every time, and so plans each lookup
                    # anew: half of its CPU per lookup (≈ 85 → 50 µs). The generic plan prunes
                    # to the same one partition. (Set on the driver's connection: it is setup, not
                    # a statement of any verification.)
                    driver.execute("SET plan_cache_mode = force_generic_plan")
                    # A bulk lookup (the asked numbers joined to report_numbers) on a table the
                    # planner has no statistics for yet (just loaded) could be planned as
                    # sequential scans of every partition (0.7 s for 500 numbers, seen with
                    # ``number = ANY(array)``); both read statements are primary-key lookups, so
                    # this connection never scans sequentially.
                    driver.execute("SET enable_seqscan = off")
                    # Nor is a lookup ever compiled: on a table whose statistics are missing or
                    # stale (autovacuum not yet through a big load, a restored database), the
                    # generic plan's estimate (3,331 rows a partition) passed jit_above_cost at
                    # 100 M numbers, and each lookup spent 4–5 ms compiling its expressions
                    # against 0.05 ms running them (docs/scale.md).
                    driver.execute("SET jit = off")
                reader = slots.reader = _Reader(conn, driver, driver.cursor())
            except (OperationalError, DBAPIError) as exc:
                raise Unavailable("the registry database is unreachable") from exc
        return reader

    def close(self, broken: bool = False) -> None:
        """Give back this thread's connection (at shutdown), or discard it (after an error)."""
        slots = self._local.slots
        reader, slots.reader = getattr(slots, "reader", None), None
        if reader is not None:
            reader.close(broken)

"""The query log, written in bulk off the request path.

Each verification appends a record to an in-process buffer; a background flush (and a final one
at shutdown) inserts them with one executemany. The client is stored as an HMAC of its address
under a key derived from the server secret and the 30-day period, so keys rotate by themselves
and raw addresses are never kept.

On PostgreSQL the table is partitioned by day (``RANGE (at)``, UTC days, migration 0012):
:class:`QueryLogDays` creates each day's partition ahead of time (the upkeep's daily chore), and
a flush creates a missing one on demand; rows of a day without a partition still land in the
default partition, never lost, and are moved into their day once it exists. Old days are dropped
whole (``QUERY_LOG_DAYS``); on SQLite the same retention is a bounded delete.

Free text is cleaned before it is buffered (no NUL, which PostgreSQL cannot store). Should a
record still be refused by the database, a flush finds it by halving the batch and drops it
alone (counted in ``rejected``, logged without its content); while the database is unreachable
the whole batch waits for the next flush.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import logging
import re
import threading
from collections import deque

from typing import Iterable

from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc

from registry.numbers.normalize import clean_text

log = logging.getLogger(__name__)
ROTATION_DAYS = 30


@functools.lru_cache(maxsize=8)
def _period_key(secret: bytes, period: int) -> bytes:
    return hmac.new(secret, f"query-log-client:{period}".encode(), hashlib.sha256).digest()


def client_key(secret: bytes, at: dt.datetime) -> bytes:
    """The key of the 30-day period containing ``at``: it changes by itself, nothing stored."""
    return _period_key(secret, int(at.timestamp() // 86400) // ROTATION_DAYS)


def client_hmac(secret: bytes, address: str, at: dt.datetime) -> str:
    return _client_hmac(client_key(secret, at), address or "")


@functools.lru_cache(maxsize=8192)
def _client_hmac(key: bytes, address: str) -> str:
    """Per (period key, address): a client asks many times, each answer needs its HMAC."""
    return hmac.digest(key, address.encode(), "sha256").hex()[:32]


@functools.lru_cache(maxsize=64)
def _sqlite_time(at: dt.datetime) -> str:
    """SQLite's text for a time (the records of one bulk request share theirs)."""
    return at.strftime("%Y-%m-%d %H:%M:%S.%f")


_COLUMNS = "at, number, institution_text, institution_id, status, client, bulk, platform_id"


class QueryLogBuffer:
    def __init__(self, *, engine: Engine, secret: bytes, max_buffer: int = 200_000,
                 days: "QueryLogDays | None" = None) -> None:
        self._engine = engine
        self._days = days
        self._secret = secret
        self._buffer: deque[tuple] = deque()
        self._max = max_buffer
        self._flush_lock = threading.Lock()
        self.dropped = 0  # not buffered: the buffer was full
        self.rejected = 0  # refused by the database on their own (bad content) and dropped
        dbapi = self._engine.dialect.loaded_dbapi
        # Errors that say nothing about the rows: the database is unreachable or went away.
        self._transient = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                           ConnectionError, TimeoutError)
        if dbapi is not None:
            self._transient += (dbapi.OperationalError, dbapi.InterfaceError)

    def record(self, *, at: dt.datetime, number: str, institution_text: str | None, institution_id: int | None,
               status: str, client_address: str, platform_id: int | None = None) -> None:
        """Buffer one verification; ``platform_id`` marks it as asked in a platform's bulk request."""
        if len(self._buffer) >= self._max:
            self.dropped += 1  # the database has been down for long; keep serving
            return
        self._buffer.append((
            (at if at.tzinfo is dt.timezone.utc else at.astimezone(dt.timezone.utc)).replace(tzinfo=None),
            clean_text(number, 200),
            clean_text(institution_text, 500) or None,
            institution_id,
            status,
            client_hmac(self._secret, client_address, at),
            None if platform_id is None else True,
            platform_id,
        ))

    def record_many(self, *, at: dt.datetime, entries: list[tuple[str, str | None, int | None, str]],
                    client_address: str, platform_id: int | None) -> None:
        """Buffer the verifications of one bulk request, all answered at ``at``: (number,
        institution text, institution id, status) each, as :meth:`record` would one by one."""
        room = self._max - len(self._buffer)
        if room < len(entries):
            self.dropped += len(entries) - max(room, 0)
            entries = entries[:max(room, 0)]
        when = (at if at.tzinfo is dt.timezone.utc else at.astimezone(dt.timezone.utc)).replace(tzinfo=None)
        client = client_hmac(self._secret, client_address, at)
        bulk = None if platform_id is None else True
        self._buffer.extend((when, clean_text(number, 200), clean_text(text, 500) or None, institution_id, status,
                             client, bulk, platform_id) for number, text, institution_id, status in entries)

    def __len__(self) -> int:
        return len(self._buffer)

    def flush(self) -> int:
        """Insert everything buffered so far in one statement (COPY on PostgreSQL); return how many
        were written. While the database is unreachable the records stay for the next flush; rows
        the database refuses for their content are found by halving the batch and dropped alone."""
        with self._flush_lock:
            rows = []
            while self._buffer:
                rows.append(self._buffer.popleft())
            if not rows:
                return 0
            if self._days is not None:
                # the buffer runs in time order: its first and last days are all a flush can span
                # (a longer outage's rows wait in the default partition until the daily chore)
                self._days.ensure_for((rows[0][0].date(), rows[-1][0].date()))
            written = 0
            pending = deque([rows])
            while pending:
                batch = pending.popleft()
                try:
                    self._insert(batch)
                except self._transient as exc:
                    back = [row for part in (batch, *pending) for row in part]
                    log.warning("query log flush failed, the database is unreachable (%s); %d records kept for "
                                "the next try", type(exc).__name__, len(back))
                    self._buffer.extendleft(reversed(back))
                    return written
                except Exception as exc:  # noqa: BLE001 - any other failure is about the rows
                    if len(batch) > 1:
                        half = len(batch) // 2
                        pending.extendleft((batch[half:], batch[:half]))
                        continue
                    self.rejected += 1  # the message may quote the row: name the error's kind only
                    log.error("query log: a record the database refused (%s) was dropped; %d so far",
                              type(exc).__name__, self.rejected)
                else:
                    written += len(batch)
            return written

    def _insert(self, rows: list[tuple]) -> None:
        with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                with conn.connection.driver_connection.cursor() as cur:
                    with cur.copy(f"COPY query_log ({_COLUMNS}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
            else:
                conn.exec_driver_sql(
                    f"INSERT INTO query_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(_sqlite_time(r[0]),) + r[1:] for r in rows],
                )


# --- the days of the log: partitions (PostgreSQL) and retention ---------------------------------
DEFAULT_PARTITION = "query_log_default"
_DAY_PARTITION = re.compile(r"^query_log_(\d{8})$")
_LOCK = "rnr:query_log_partitions"


def partition_name(day: dt.date) -> str:
    return f"query_log_{day:%Y%m%d}"


class QueryLogDays:
    """The query log's days: on PostgreSQL one partition per UTC day, created ahead and dropped
    whole once older than the retention; on SQLite a single table trimmed by bounded deletes.

    DDL runs under a transaction-scoped advisory lock (every web process runs the same chores) and
    a short lock timeout, so a flush never waits long behind it; whatever could not be done now is
    done by the next call, and rows meanwhile sit in the default partition."""

    def __init__(self, *, engine: Engine, days_ahead: int = 7, batch: int = 10_000) -> None:
        self._engine = engine
        self._ahead = days_ahead
        self._batch = batch
        self._known: set[dt.date] = set()
        self._partitioned: bool | None = None

    @property
    def partitioned(self) -> bool:
        """True on PostgreSQL once migration 0012 made ``query_log`` partitioned."""
        if self._partitioned is None:
            if self._engine.dialect.name != "postgresql":
                self._partitioned = False
            else:
                with self._engine.connect() as conn:
                    kind = conn.execute(text("SELECT relkind FROM pg_class WHERE oid = to_regclass('query_log')"))
                    self._partitioned = kind.scalar() == "p"
        return self._partitioned

    def ensure_for(self, days: Iterable[dt.date]) -> None:
        """The flush's check: create the partitions of ``days`` not known to exist (cached per
        process, so a flush of known days costs a set lookup). Never raises: the default
        partition takes the rows if a partition cannot be made now."""
        missing = set(days) - self._known
        if not missing:
            return
        try:
            if self.partitioned:
                self.ensure(missing)
            else:
                self._known |= missing
        except Exception as exc:  # noqa: BLE001 - the rows go to the default partition meanwhile
            log.warning("query log: could not create the partition of %s now (%s); rows go to the default "
                        "partition until it exists", ", ".join(map(str, sorted(missing))), type(exc).__name__)

    def ensure(self, days: Iterable[dt.date]) -> list[str]:
        """Create the partitions of ``days`` that do not exist; rows of those days already in the
        default partition move into them in the same transaction. Returns the names created."""
        created = []
        for day in sorted(set(days)):
            with self._engine.begin() as conn:
                self._lock(conn)
                name = partition_name(day)
                if conn.execute(text("SELECT to_regclass(:n)"), {"n": name}).scalar() is None:
                    low, high = day.isoformat(), (day + dt.timedelta(days=1)).isoformat()
                    # made apart and attached: ATTACH locks the parent less than CREATE … PARTITION OF,
                    # and checks the default partition no longer holds rows of this day
                    conn.exec_driver_sql(f'CREATE TABLE "{name}" (LIKE query_log INCLUDING DEFAULTS)')
                    conn.exec_driver_sql(
                        f'WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE at >= %(low)s AND at < %(high)s '
                        f'RETURNING *) INSERT INTO "{name}" SELECT * FROM moved', {"low": low, "high": high})
                    conn.exec_driver_sql(f"ALTER TABLE \"{name}\" ADD CONSTRAINT \"{name}_day\" CHECK "
                                         f"(at >= '{low}' AND at < '{high}')")
                    conn.exec_driver_sql(f"ALTER TABLE query_log ATTACH PARTITION \"{name}\" "
                                         f"FOR VALUES FROM ('{low}') TO ('{high}')")
                    conn.exec_driver_sql(f'ALTER TABLE "{name}" DROP CONSTRAINT "{name}_day"')
                    created.append(name)
            self._known.add(day)
        if created:
            log.info("query log: partitions %s created", ", ".join(created))
        return created

    def days(self) -> list[dt.date]:
        """The days that have a partition, oldest first (PostgreSQL)."""
        with self._engine.connect() as conn:
            names = conn.execute(text("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                      "WHERE i.inhparent = 'query_log'::regclass")).scalars().all()
        return sorted(dt.datetime.strptime(m.group(1), "%Y%m%d").date()
                      for m in map(_DAY_PARTITION.match, names) if m)

    def maintain(self, *, today: dt.date, keep_days: int) -> dict[str, int]:
        """The daily chore: partitions from yesterday to ``days_ahead`` days on (PostgreSQL), rows
        waiting in the default partition moved into their days, and every day older than
        ``keep_days`` dropped (whole partitions; on SQLite deleted in bounded batches)."""
        cutoff = today - dt.timedelta(days=keep_days)
        figures = {"created": 0, "dropped": 0, "deleted": 0}
        if not self.partitioned:
            figures["deleted"] = self._delete_before(cutoff)
            return figures
        ahead = {today + dt.timedelta(days=n) for n in range(-1, self._ahead + 1)}
        with self._engine.connect() as conn:
            waiting = set(conn.execute(text(
                f"SELECT DISTINCT CAST(at AS date) FROM {DEFAULT_PARTITION} WHERE at >= :cutoff"),
                {"cutoff": cutoff}).scalars())
        figures["created"] = len(self.ensure(ahead | waiting))
        for day in self.days():
            if day >= cutoff:
                break
            with self._engine.begin() as conn:
                self._lock(conn)
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{partition_name(day)}"')
            self._known.discard(day)
            figures["dropped"] += 1
        figures["deleted"] = self._delete_before(cutoff, table=DEFAULT_PARTITION)
        if figures["dropped"] or figures["deleted"]:
            log.info("query log: days before %s removed: %s", cutoff, figures)
        return figures

    def _delete_before(self, cutoff: dt.date, table: str = "query_log") -> int:
        """Delete rows older than ``cutoff`` in batches of ``batch``, each its own transaction
        (short locks; the oldest rows come first in id order, so each batch finds them at once)."""
        moment = dt.datetime.combine(cutoff, dt.time())
        bound = _sqlite_time(moment) if self._engine.dialect.name == "sqlite" else moment
        deleted = 0
        while True:
            with self._engine.begin() as conn:
                n = conn.execute(text(f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < :cutoff "
                                      f"ORDER BY id LIMIT :batch)"), {"cutoff": bound, "batch": self._batch}).rowcount
            deleted += n
            if n < self._batch:
                return deleted

    @staticmethod
    def _lock(conn) -> None:
        conn.exec_driver_sql("SET LOCAL lock_timeout = '5s'")
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _LOCK})

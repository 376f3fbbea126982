"""The query log, written in bulk off the request path.

Each verification appends a record to an in-process buffer; a background flush (and a final one
at shutdown) inserts them with one executemany. The client is stored as an HMAC of its address
under a key derived from the server secret and the 30-day period, so keys rotate by themselves
and raw addresses are never kept.

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
import threading
from collections import deque

from sqlalchemy import Engine
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
    def __init__(self, *, engine: Engine, secret: bytes, max_buffer: int = 200_000) -> None:
        self._engine = engine
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

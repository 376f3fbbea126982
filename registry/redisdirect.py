"""One Redis connection per thread for the calls made on every verification.

Each verification makes one Redis exchange for its rate-limit count and one for its Bloom probe.
Through redis-py's client methods each costs about 80 µs of CPU on this kind of host (retry
wrapper, observability hooks, pool checkout and release on every command) against about 35 µs
for the exchange itself. These calls go straight to a connection of the client's own class
and settings (same URL, database, password, timeouts, health checks) held by the calling
thread; every other Redis call keeps using the client.

A failure of any kind drops the connection, so a half-read reply can never be taken for the
next one, and re-raises redis-py's exception; the next call connects afresh. A forked child
never uses its parent's connection.
"""
from __future__ import annotations

import os
import threading

try:
    from hiredis import pack_command as _pack  # C; redis-py's own packer re-checks every argument in Python
except ImportError:  # pragma: no cover - hiredis is a dependency; stay correct without it
    _pack = None


class DirectRedis:
    def __init__(self, client) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._local = threading.local()

    def _connection(self):
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None or local.pid != os.getpid():
            conn = local.conn = self._connection_class(**self._connection_kwargs)
            local.pid = os.getpid()
        return conn

    def call(self, *args):
        """One command, one reply."""
        conn = self._connection()
        try:
            conn.send_packed_command([_pack(args)] if _pack else conn.pack_command(*args))
            return conn.read_response()
        except BaseException:
            self.drop()
            raise

    def pipeline(self, commands: list[tuple]) -> list:
        """Several commands in one write; their replies in order."""
        conn = self._connection()
        try:
            conn.send_packed_command([b"".join(map(_pack, commands))] if _pack else conn.pack_commands(commands))
            return [conn.read_response() for _ in commands]
        except BaseException:
            self.drop()
            raise

    def drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None and self._local.pid == os.getpid():
            conn.disconnect()

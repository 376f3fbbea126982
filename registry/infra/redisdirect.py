"""One Redis connection per thread for the calls made on every verification.

Through redis-py's client methods each call costs about 80 µs of CPU on this kind of host (retry
wrapper, observability hooks, pool checkout and release on every command). The verify path
instead talks on a connection of the client's own class and settings (same URL, database,
password, timeouts, health checks — ``connection_pool.connection_class`` and
``connection_kwargs``) held by the calling thread, and sends its commands in one write. Every
other Redis call keeps using the client.

An error reply belongs to its command only (the stream stays in step). Any other failure
(timeout, reset) drops the connection, so a half-read reply can never be taken for the next
one, and is raised to the caller; the next call connects afresh. A forked child never uses its
parent's connection. ``on_connect``, when set, is called with each new connection once it is
connected, before its first command; raising refuses it (the call fails as if it had dropped).
"""
from __future__ import annotations

from redis.exceptions import ResponseError

from registry.infra.forklocal import ForkLocal

try:
    from hiredis import pack_command  # C; redis-py's own packer re-checks every argument in Python
except ImportError:  # pragma: no cover - hiredis is a dependency; stay correct without it
    pack_command = None


class Packed(bytes):
    """A command already in the Redis protocol's bytes (a bulk probe's, registry/bloom/stores.py),
    sent by :meth:`DirectRedis.exchange` as it is."""


def _pack(command) -> bytes:
    return command if command.__class__ is Packed else pack_command(command)


class DirectRedis:
    def __init__(self, client) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._local = ForkLocal()
        self.on_connect = None  # called with each new connection (see the module's docstring)

    def connection(self):
        """This thread's connection (made on first use)."""
        slots = self._local.slots
        conn = getattr(slots, "conn", None)
        if conn is None:
            conn = self._connection_class(**self._connection_kwargs)
            check = self.on_connect
            try:
                # connected here, as redis-py's pool does, never lazily by the first send: a
                # Sentinel-managed connection learns the primary's address in its connect(), which
                # the lazy path of send_packed_command skips (it then reached localhost:6379)
                conn.connect()
                if check is not None:
                    check(conn)
            except BaseException:
                conn.disconnect()
                raise
            slots.conn = conn
        return conn

    def call(self, *args):
        """One command, one reply; an error reply is raised."""
        return checked(self.exchange([args]))[0]

    def exchange(self, commands: list[tuple | Packed]) -> list:
        """Several commands (argument tuples, or :class:`Packed`) in one write; their replies in
        order, an error reply as its :class:`ResponseError` in its place (not raised). A failure
        of the exchange itself (timeout, reset) drops the connection and is raised."""
        if not commands:
            return []
        conn = self.connection()
        try:
            if pack_command is not None:
                conn.send_packed_command([b"".join(map(_pack, commands))])
            else:
                conn.send_packed_command([c if c.__class__ is Packed else b"".join(conn.pack_command(*c))
                                          for c in commands])
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # read whole: the stream is still in step
                    replies.append(exc)
        except BaseException:
            self.drop()
            raise
        return replies

    def drop(self) -> None:
        """Close this thread's connection (the next call connects afresh)."""
        slots = self._local.slots
        conn, slots.conn = getattr(slots, "conn", None), None
        if conn is not None:
            conn.disconnect()


def checked(replies: list) -> list:
    """``replies``, raising the first error reply among them."""
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies

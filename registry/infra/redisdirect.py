"""One Redis connection per thread for the calls made on every verification, and one exchange.

Each verification needs Redis twice: for its rate-limit count and for its Bloom probe. Through
redis-py's client methods each call costs about 80 µs of CPU on this kind of host (retry
wrapper, observability hooks, pool checkout and release on every command), and each exchange
costs a send, a receive and a wake-up of Redis on both sides. Here the calls go straight to a
connection of the client's own class and settings (same URL, database, password, timeouts,
health checks) held by the calling thread, and commands can be *deferred*: queued without
I/O, they travel with the thread's next exchange (the rate-limit count rides along with the
Bloom probe) or on their own when their replies are asked for first. Every other Redis call
keeps using the client.

An error reply belongs to its command only (the stream stays in step). Any other failure
(timeout, reset) drops the connection, so a half-read reply can never be taken for the next
one, and is raised to the caller and to every deferred command that was travelling with it;
the next call connects afresh. A forked child never uses its parent's connection.
"""
from __future__ import annotations

from redis.exceptions import ResponseError

from registry.infra.forklocal import ForkLocal

try:
    from hiredis import pack_command as _pack  # C; redis-py's own packer re-checks every argument in Python
except ImportError:  # pragma: no cover - hiredis is a dependency; stay correct without it
    _pack = None


class Deferred:
    """Commands waiting for the calling thread's next exchange; ``replies()`` sends them on
    their own if nothing has carried them yet."""

    __slots__ = ("commands", "_owner", "_replies", "_error")

    def __init__(self, owner: DirectRedis, commands: list[tuple]) -> None:
        self.commands = commands
        self._owner = owner
        self._replies: list | None = None
        self._error: BaseException | None = None

    @property
    def settled(self) -> bool:
        return self._replies is not None or self._error is not None

    def replies(self) -> list:
        """The replies in order; raises what the exchange raised, or the first error reply."""
        if not self.settled:
            self._owner.flush()
        if self._error is not None:
            raise self._error
        return _checked(self._replies)

    def _settle(self, replies: list | None, error: BaseException | None = None) -> None:
        self._replies, self._error = replies, error


def _checked(replies: list) -> list:
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


class DirectRedis:
    def __init__(self, client) -> None:
        pool = client.connection_pool
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._local = ForkLocal()

    def _connection(self):
        slots = self._local.slots
        conn = getattr(slots, "conn", None)
        if conn is None:
            conn = slots.conn = self._connection_class(**self._connection_kwargs)
        return conn

    def defer(self, commands: list[tuple]) -> Deferred:
        """Queue ``commands`` for this thread's next exchange; no I/O now."""
        deferred = Deferred(self, commands)
        slots = self._local.slots
        pending = getattr(slots, "pending", None)
        if pending is None:
            slots.pending = [deferred]
        else:
            pending.append(deferred)
        return deferred

    def call(self, *args):
        """One command, one reply (with whatever was deferred, in the same exchange)."""
        return self.pipeline([args])[0]

    def pipeline(self, commands: list[tuple]) -> list:
        """Several commands in one write; their replies in order."""
        return _checked(self._exchange(commands))

    def flush(self) -> None:
        """Send what was deferred, on its own."""
        self._exchange([])

    def _exchange(self, commands: list[tuple]) -> list:
        slots = self._local.slots
        riders = getattr(slots, "pending", None)
        if riders:
            slots.pending = None
            commands = [c for d in riders for c in d.commands] + commands
        if not commands:
            return []
        conn = self._connection()
        try:
            conn.send_packed_command([b"".join(map(_pack, commands))] if _pack else conn.pack_commands(commands))
            replies = []
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # read whole: the stream is still in step
                    replies.append(exc)
        except BaseException as exc:
            self.drop()
            for d in riders or ():
                d._settle(None, exc)
            raise
        if riders:
            start = 0
            for d in riders:
                d._settle(replies[start:start + len(d.commands)])
                start += len(d.commands)
            replies = replies[start:]
        return replies

    def drop(self) -> None:
        """Close this thread's connection (the next call connects afresh)."""
        slots = self._local.slots
        conn, slots.conn = getattr(slots, "conn", None), None
        if conn is not None:
            conn.disconnect()

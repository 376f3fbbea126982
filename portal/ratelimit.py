"""The verify budget (``RATELIMIT_VERIFY``): one count per client across ``/api/v1/verify``,
``/verify`` and ``/v/…``.

Flask-Limiter guards every other limited route. The verify routes count here instead, with the
same fixed-window semantics, because on Redis their count can then share the Bloom probe's
exchange (portal/edge.py): :meth:`VerifyLimiter.commands` gives the Redis command of one hit
(one small script: ``INCR``, ``PEXPIRE`` on a window's first hit, ``PTTL``, for each limit) and
:meth:`VerifyLimiter.decide` turns its reply into a :class:`Decision`. (One script instead of
three commands per limit: Redis dispatches one command, the client reads one reply.) Without Redis, or for a few seconds after Redis failed (logged and
counted, as Flask-Limiter's in-memory fallback does), hits are counted in a file shared by every
worker of the host (portal/hostwindows.py), so a limit means the same with 1 or 8 workers.
The HTML pages count with :meth:`VerifyLimiter.hit` (an exchange of their own) before they verify.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import NamedTuple

from flask import current_app
from limits import parse_many
from redis import RedisError

from .errors import error_response
from .extensions import client_address
from .hostwindows import HostWindows, key_hash

log = logging.getLogger(__name__)
FALLBACK_SECONDS = 5.0
CLIENTS_KEPT = 10_000  # clients whose commands are kept made (then forgotten all at once)

#: KEYS: one window key per limit; ARGV: each window's length in ms. Returns count, PTTL per key.
COUNT_SCRIPT = """
local out = {}
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 then redis.call('PEXPIRE', key, ARGV[i]) end
  out[2 * i - 1] = n
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""


class Decision(NamedTuple):
    """A limiter's answer (a named tuple: made on every verification, twice, in 0.3 µs)."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the binding window ends

    @property
    def retry_after(self) -> int:
        return max(1, int(self.reset_at - time.time() + 0.999))

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", str(self.limit)),
            ("X-RateLimit-Remaining", str(self.remaining)),
            ("X-RateLimit-Reset", str(int(self.reset_at))),
        ]


class VerifyLimiter:
    """The limits of one spec (``30/minute;500/day``), counted on Redis through ``redis`` (a
    :class:`registry.infra.redisdirect.DirectRedis`) or, when that is None, in ``windows``
    (the host's shared counts)."""

    def __init__(self, spec: str, *, windows: HostWindows, redis=None, prefix: str = "rnr:rl:verify") -> None:
        self._limits = [(item.amount, int(item.get_expiry())) for item in parse_many(spec)]
        self._prefix = prefix
        self._redis = redis
        self._windows = windows
        self._fallback_until = 0.0
        self._clients: dict[str, tuple[list[tuple[str, int]], list[tuple], list[tuple[int, int]]]] = {}
        self.failures = 0

    def _made(self, client: str) -> tuple[list[tuple[str, int]], list[tuple], list[tuple[int, int]]]:
        made = self._clients.get(client)
        if made is None:
            if len(self._clients) >= CLIENTS_KEPT:
                self._clients.clear()
            # one hash tag per client: its keys share a slot, as a script on Redis Cluster needs
            keys = [(f"{self._prefix}:{{{client}}}:{amount}/{seconds}", seconds) for amount, seconds in self._limits]
            commands = [("EVAL", COUNT_SCRIPT, len(keys), *(k for k, _ in keys), *(s * 1000 for _, s in keys))]
            hashed = [(key_hash(key), seconds) for key, seconds in keys]
            made = self._clients[client] = (keys, commands, hashed)
        return made

    def commands(self, client: str) -> list[tuple]:
        """The Redis commands that count one hit of ``client``; [] when counting on the host."""
        if self._redis is None or time.monotonic() < self._fallback_until:
            return []
        return self._made(client)[1]

    def decide(self, client: str, replies: list) -> Decision:
        """The decision from the replies to :meth:`commands` (on the host if they are [] or failed)."""
        if not replies:
            return self.count_on_host(client)
        [reply] = replies
        if isinstance(reply, Exception):
            return self.failed(client, reply)
        now = time.time()
        counts = []
        for i, (_, seconds) in enumerate(self._made(client)[0]):
            count, ttl_ms = reply[2 * i], reply[2 * i + 1]
            counts.append((int(count), now + (ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else seconds)))
        return self._decision(counts)

    def count_on_host(self, client: str) -> Decision:
        """Count on the host (no Redis, or Redis failing)."""
        return self._decision(self._windows.hit(self._made(client)[2]))

    def failed(self, client: str, exc: BaseException) -> Decision:
        """Redis failed: count this hit, and the next few seconds' hits, on the host."""
        self.failures += 1
        self._fallback_until = time.monotonic() + FALLBACK_SECONDS
        log.warning("rate-limit storage unreachable (%s); counting on this host for %ss",
                    exc.__class__.__name__, FALLBACK_SECONDS)
        return self.count_on_host(client)

    def hit(self, client: str) -> Decision:
        """Count a hit of ``client`` now, in an exchange of its own."""
        commands = self.commands(client)
        if not commands:
            return self.count_on_host(client)
        try:
            replies = self._redis.exchange(commands)
        except RedisError as exc:
            return self.failed(client, exc)
        return self.decide(client, replies)

    def _decision(self, counts: list[tuple[int, float]]) -> Decision:
        decisions = [
            Decision(count <= amount, amount, max(0, amount - count), reset_at)
            for (amount, _), (count, reset_at) in zip(self._limits, counts)
        ]
        denied = [d for d in decisions if not d.allowed]
        if denied:
            return max(denied, key=lambda d: d.reset_at)
        return min(decisions, key=lambda d: d.remaining)


#: The quota of a platform key (items, all or nothing). KEYS: the minute and the day window;
#: ARGV: items asked, then limit and window ms of each key. Returns taken (0/1), then count and
#: PTTL per key (the count after taking, or the count left untouched when refused).
QUOTA_SCRIPT = """
local amount = tonumber(ARGV[1])
local counts = {}
local taken = 1
for i, key in ipairs(KEYS) do
  counts[i] = tonumber(redis.call('GET', key) or '0')
  if counts[i] + amount > tonumber(ARGV[2 * i]) then taken = 0 end
end
local out = {taken}
for i, key in ipairs(KEYS) do
  if taken == 1 then
    counts[i] = redis.call('INCRBY', key, amount)
    if counts[i] == amount then redis.call('PEXPIRE', key, ARGV[2 * i + 1]) end
  end
  out[2 * i] = counts[i]
  out[2 * i + 1] = redis.call('PTTL', key)
end
return out
"""


class PlatformQuota:
    """A platform key's quotas in items per minute and per day: a request takes all its items or
    is refused whole. Counted on Redis (shared by every host) or, without Redis or for a few
    seconds after it failed, in the host's shared file (every worker and process of the host)."""

    WINDOWS = (60, 86400)

    def __init__(self, *, windows: HostWindows, redis=None, prefix: str = "rnr:quota:platform") -> None:
        self._redis = redis
        self._windows = windows
        self._prefix = prefix
        self._fallback_until = 0.0
        self.failures = 0

    def _keys(self, platform) -> list[tuple[str, int, int]]:
        limits = (platform.per_minute, platform.per_day)
        return [(f"{self._prefix}:{{{platform.id}}}:{seconds}", seconds, limit)
                for seconds, limit in zip(self.WINDOWS, limits)]

    def commands(self, platform, items: int) -> list[tuple]:
        """The Redis command that takes ``items`` from the quota; [] when counting on the host."""
        if self._redis is None or time.monotonic() < self._fallback_until:
            return []
        keys = self._keys(platform)
        args = [a for _, seconds, limit in keys for a in (limit, seconds * 1000)]
        return [("EVAL", QUOTA_SCRIPT, len(keys), *(k for k, _, _ in keys), items, *args)]

    def decide(self, platform, items: int, replies: list) -> Decision:
        if not replies:
            return self.take_on_host(platform, items)
        [reply] = replies
        if isinstance(reply, Exception):
            return self.failed(platform, items, reply)
        now = time.time()
        counts = []
        for i, (_, seconds, _) in enumerate(self._keys(platform)):
            count, ttl_ms = int(reply[2 * i + 1]), reply[2 * i + 2]
            counts.append((count, now + (ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else seconds)))
        return self._decision(platform, items, bool(int(reply[0])), counts)

    def take_on_host(self, platform, items: int) -> Decision:
        keys = [(key_hash(k), seconds, limit) for k, seconds, limit in self._keys(platform)]
        taken, counts = self._windows.take(keys, items)
        return self._decision(platform, items, taken, counts)

    def failed(self, platform, items: int, exc: BaseException) -> Decision:
        self.failures += 1
        self._fallback_until = time.monotonic() + FALLBACK_SECONDS
        log.warning("quota storage unreachable (%s); counting on this host for %ss",
                    exc.__class__.__name__, FALLBACK_SECONDS)
        return self.take_on_host(platform, items)

    @staticmethod
    def _decision(platform, items: int, taken: bool, counts: list[tuple[int, float]]) -> Decision:
        limits = (platform.per_minute, platform.per_day)
        decisions = [Decision(count + (0 if taken else items) <= limit, limit, max(0, limit - count), reset_at)
                     for limit, (count, reset_at) in zip(limits, counts)]
        if not taken:
            denied = [d for d in decisions if not d.allowed] or decisions
            d = max(denied, key=lambda d: d.reset_at)
            return Decision(False, d.limit, d.remaining, d.reset_at)
        return min(decisions, key=lambda d: d.remaining)


def verify_limiter() -> VerifyLimiter:
    return current_app.extensions["verify_limiter"]


def counts_on_verify_budget(view):
    """Decorate an HTML verify view: count the hit first — a refused one gets the 429 page and
    looks nothing up — and add the ``X-RateLimit-*`` headers."""

    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        decision = verify_limiter().hit(client_address())
        if not decision.allowed:
            response = error_response(429, retry_after=decision.retry_after)
        else:
            response = current_app.make_response(view(*args, **kwargs))
        response.headers.extend(decision.headers())
        return response

    return wrapped


__all__ = ["Decision", "PlatformQuota", "VerifyLimiter", "counts_on_verify_budget", "verify_limiter"]

"""The rate limits of the verification endpoints, engineered for the hot path.

Flask-Limiter guards every other limited route. The verify endpoints are the product's hot
path, where Flask-Limiter's generic machinery (limit resolution, exemption scopes, one storage
call per limit plus more for the headers) cost more than the verification itself. Here the
limits of ``RATELIMIT_VERIFY`` are parsed once and checked with the same fixed-window semantics
in a single storage round trip: one pipelined ``INCR``/``EXPIRE NX``/``PTTL`` per limit on
Redis, a dict in embedded mode. When Redis fails, counting falls back to this worker's memory
for a few seconds (logged and counted), as Flask-Limiter's in-memory fallback does.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass

from flask import Response, current_app, g
from limits import parse_many

from registry.redisdirect import DirectRedis

from .errors import error_response
from .extensions import client_address

log = logging.getLogger(__name__)
FALLBACK_SECONDS = 5.0


@dataclass(frozen=True)
class Decision:
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


class _MemoryWindows:
    """Fixed windows in this worker's memory; expired ones are swept inline now and then."""

    def __init__(self) -> None:
        self._windows: dict[str, list] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.monotonic() + 60

    def hit(self, keys_and_windows: list[tuple[str, int]]) -> list[tuple[int, float]]:
        now = time.time()
        out = []
        with self._lock:
            if time.monotonic() > self._next_sweep:
                self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
                self._next_sweep = time.monotonic() + 60
            for key, seconds in keys_and_windows:
                entry = self._windows.get(key)
                if entry is None or entry[1] <= now:
                    entry = self._windows[key] = [0, now + seconds]
                entry[0] += 1
                out.append((entry[0], entry[1]))
        return out


class VerifyLimiter:
    def init_app(self, app) -> None:
        items = parse_many(app.config["RATELIMIT_VERIFY"])
        state = {
            "items": [(item.amount, int(item.get_expiry()), f"{item.amount}/{int(item.get_expiry())}") for item in items],
            "memory": _MemoryWindows(),
            "redis": None,
            "fallback_until": 0.0,
            "failures": 0,
        }
        if app.config.get("REDIS_URL"):
            import redis

            state["redis"] = DirectRedis(redis.Redis.from_url(
                app.config["REDIS_URL"], socket_timeout=0.2, socket_connect_timeout=0.2, retry_on_timeout=False
            ))
        app.extensions["verify_limiter"] = state

    @staticmethod
    def _state():
        return current_app.extensions["verify_limiter"]

    def hit(self, client: str) -> Decision:
        state = self._state()
        keys = [(f"rnr:rl:verify:{spec}:{client}", seconds) for _, seconds, spec in state["items"]]
        counts = None
        if state["redis"] is not None and time.monotonic() >= state["fallback_until"]:
            counts = self._hit_redis(state, keys)
        if counts is None:
            counts = state["memory"].hit(keys)
        decisions = [
            Decision(count <= amount, amount, max(0, amount - count), reset_at)
            for (amount, _, _), (count, reset_at) in zip(state["items"], counts)
        ]
        denied = [d for d in decisions if not d.allowed]
        if denied:
            return max(denied, key=lambda d: d.reset_at)
        return min(decisions, key=lambda d: d.remaining)

    @staticmethod
    def _hit_redis(state, keys) -> list[tuple[int, float]] | None:
        import redis

        commands = []
        for key, seconds in keys:
            commands += [("INCR", key), ("EXPIRE", key, seconds, "NX"), ("PTTL", key)]
        try:
            replies = state["redis"].pipeline(commands)
        except redis.RedisError as exc:
            state["failures"] += 1
            state["fallback_until"] = time.monotonic() + FALLBACK_SECONDS
            log.warning("rate-limit storage unreachable (%s); counting in memory for %ss", exc.__class__.__name__, FALLBACK_SECONDS)
            return None
        now = time.time()
        out = []
        for i, (_, seconds) in enumerate(keys):
            count, ttl_ms = replies[3 * i], replies[3 * i + 2]
            out.append((int(count), now + (ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else seconds)))
        return out

    def limit(self, view):
        """Decorate a verify view: count the hit, answer 429 when over, add the headers."""

        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            decision = g.rate_decision = self.hit(client_address())
            if not decision.allowed:
                response = error_response(429, retry_after=decision.retry_after)
            else:
                response = view(*args, **kwargs)
                if not isinstance(response, Response):
                    response = current_app.make_response(response)
            if "X-RateLimit-Limit" not in response.headers:  # the view may have set them already
                response.headers.extend(decision.headers())
            return response

        return wrapped


verify_limiter = VerifyLimiter()
__all__ = ["Decision", "VerifyLimiter", "verify_limiter"]

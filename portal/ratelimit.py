"""The rate limits of the verification endpoints, engineered for the hot path.

Flask-Limiter guards every other limited route. The verify endpoints are the product's hot
path, where Flask-Limiter's generic machinery (limit resolution, exemption scopes, one storage
call per limit plus more for the headers) cost more than the verification itself. Here the
limits of ``RATELIMIT_VERIFY`` are parsed once and checked with the same fixed-window semantics:
one ``INCR``/``EXPIRE NX``/``PTTL`` per limit on Redis, a dict in embedded mode. When Redis fails,
counting falls back to this worker's memory for a few seconds (logged and counted), as
Flask-Limiter's in-memory fallback does.

On Redis the count costs no exchange of its own: the decorator *defers* its commands on the
registry's per-thread Redis connection (registry/redisdirect.py) and the view hands the
verification service a gate (``admit``) that it consults right after the Bloom probe — whose
exchange carried the count — and before anything else happens (the database, the query log).
A refused hit therefore changes nothing; a view that never reaches the gate (a malformed
number) is decided after it returns, by an exchange of its own.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass

from flask import Response, current_app, g
from limits import parse_many

from registry.verification.service import NotAdmitted

from .errors import error_response
from .extensions import client_address
from .jsonio import JSONResponse

log = logging.getLogger(__name__)
FALLBACK_SECONDS = 5.0
CLIENTS_KEPT = 10_000  # clients whose keys are kept made (then forgotten all at once)


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


class Pending:
    """One hit being counted; settled when its decision is first asked for."""

    __slots__ = ("_limiter", "_state", "_keys", "_deferred", "_decision")

    def __init__(self, limiter: VerifyLimiter, state: dict, keys: list[tuple[str, int]], deferred) -> None:
        self._limiter, self._state, self._keys, self._deferred = limiter, state, keys, deferred
        self._decision: Decision | None = None

    def decision(self) -> Decision:
        if self._decision is None:
            counts = self._limiter._redis_counts(self._state, self._keys, self._deferred) if self._deferred else None
            if counts is None:
                counts = self._state["memory"].hit(self._keys)
            self._decision = self._limiter._decide(self._state, counts)
        return self._decision

    def admit(self) -> bool:
        """The gate handed to the verification service."""
        return self.decision().allowed


class VerifyLimiter:
    def init_app(self, app) -> None:
        items = parse_many(app.config["RATELIMIT_VERIFY"])
        registry = app.extensions["registry"]
        app.extensions["verify_limiter"] = {
            "items": [(item.amount, int(item.get_expiry()), f"{item.amount}/{int(item.get_expiry())}") for item in items],
            "memory": _MemoryWindows(),
            # the registry's per-thread connection: the one the Bloom probe talks on
            "redis": registry.hot_redis,
            "fallback_until": 0.0,
            "failures": 0,
            "clients": {},  # client → its keys and commands, made once
        }

    @staticmethod
    def _state():
        return current_app.extensions["verify_limiter"]

    def begin(self, client: str) -> Pending:
        """Count a hit of ``client``: on Redis the commands wait for the next exchange."""
        state = self._state()
        known = state["clients"]
        keys_and_commands = known.get(client)
        if keys_and_commands is None:
            if len(known) >= CLIENTS_KEPT:
                known.clear()
            keys = [(f"rnr:rl:verify:{spec}:{client}", seconds) for _, seconds, spec in state["items"]]
            commands = []
            for key, seconds in keys:
                commands += [("INCR", key), ("EXPIRE", key, seconds, "NX"), ("PTTL", key)]
            keys_and_commands = known[client] = (keys, commands)
        keys, commands = keys_and_commands
        deferred = None
        if state["redis"] is not None and time.monotonic() >= state["fallback_until"]:
            deferred = state["redis"].defer(commands)
        return Pending(self, state, keys, deferred)

    def hit(self, client: str) -> Decision:
        """Count a hit and decide now."""
        return self.begin(client).decision()

    @staticmethod
    def _decide(state, counts) -> Decision:
        decisions = [
            Decision(count <= amount, amount, max(0, amount - count), reset_at)
            for (amount, _, _), (count, reset_at) in zip(state["items"], counts)
        ]
        denied = [d for d in decisions if not d.allowed]
        if denied:
            return max(denied, key=lambda d: d.reset_at)
        return min(decisions, key=lambda d: d.remaining)

    @staticmethod
    def _redis_counts(state, keys, deferred) -> list[tuple[int, float]] | None:
        import redis

        try:
            replies = deferred.replies()
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
        """Decorate a verify view: count the hit, answer 429 when over, add the headers.

        The view finds the hit in ``g.rate_pending`` and passes ``g.rate_pending.admit`` to the
        verification service as its gate."""

        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            pending = g.rate_pending = self.begin(client_address())
            try:
                response = view(*args, **kwargs)
            except NotAdmitted:
                response = None
            except BaseException:
                pending.decision()  # the hit counts all the same
                raise
            decision = g.rate_decision = pending.decision()
            if not decision.allowed:
                response = error_response(429, retry_after=decision.retry_after)
            elif not isinstance(response, Response):
                response = current_app.make_response(response)
            if isinstance(response, JSONResponse):
                response.add_headers(decision.headers())
            elif "X-RateLimit-Limit" not in response.headers:  # the view may have set them already
                response.headers.extend(decision.headers())
            return response

        return wrapped


verify_limiter = VerifyLimiter()
__all__ = ["Decision", "Pending", "VerifyLimiter", "verify_limiter"]

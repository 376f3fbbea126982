"""Read replicas for the positive lookups (docs/architecture.md, "Read replicas").

A possible hit (the Bloom index said "maybe") is looked up on a streaming replica of PostgreSQL
when one is fresh enough; everything else reads and writes the primary. Two rules keep the
contract:

- **A replica's miss is never final.** Bits are set before their rows commit on the primary, so a
  replica that has not replayed a registration yet finds no row for a number the index already
  knows. No position known before the probe can prove that the replica has that commit (it may
  commit after any position read earlier), and asking the primary for its position after the
  probe costs the same round trip as asking it for the row. So when the replica's rows do not
  answer the question (no row; or, with an institution named, none of that institution), the
  primary answers (:meth:`VerificationService.answer`).
- **A replica answers only while it is at most ``max_lag`` seconds behind.** A withdrawal not yet
  replayed still reads ``found`` there. Every ``refresh_every`` seconds (at most once a second)
  one lookup of the process reads the primary's WAL position (``pg_current_wal_lsn()``) and each
  replica's replayed position (``pg_last_wal_replay_lsn()``); a replica that has replayed a
  position the primary had at (local, monotonic) moment *t* holds every commit made before *t*.
  It answers until ``t + max_lag``; after that, and while it is unreachable or not a replica, the
  primary answers. No clock is compared across hosts.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

from sqlalchemy import Engine

from registry.verification.readers import ReadConnections, Unavailable

_PRIMARY_POSITION = "SELECT pg_current_wal_lsn()::text"
_REPLAYED_POSITION = "SELECT pg_last_wal_replay_lsn()::text"


def parse_lsn(value: str | None) -> int | None:
    """A ``pg_lsn`` as text (``16/B374D848``) as one integer; None for NULL."""
    if value is None:
        return None
    high, _, low = value.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class Replica:
    """One replica: its per-thread read connections and how fresh it is."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.name = name
        self.reads = ReadConnections(engine)
        self.current_at: float | None = None  # it held every commit made before this moment
        self.problem: str | None = "not checked yet"

    def fresh(self, now: float, max_lag: float) -> bool:
        return self.problem is None and self.current_at is not None and now - self.current_at <= max_lag


class Replicas:
    """The replicas of one process and their freshness, shared by its threads."""

    def __init__(self, engines: list[tuple[str, Engine]], *, primary: ReadConnections, max_lag: float,
                 count: Callable[[int], None] = lambda n: None, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None) -> None:
        self.replicas = [Replica(engine, name) for name, engine in engines]
        self.max_lag = max_lag
        # often enough that a replica a little behind stays usable (it catches up with a sample
        # taken one refresh ago), rarely enough to cost nothing per request
        self.refresh_every = min(1.0, max_lag / 4)
        self._primary = primary
        self._count = count  # statements run, for the caller's statement count
        self._clock = clock
        self._log = logger or logging.getLogger(__name__)
        self._samples: deque[tuple[float, int]] = deque()  # (moment, primary's position then), oldest first
        self._refreshed_at = float("-inf")
        self._refreshing = threading.Lock()
        self._turn = 0

    def pick(self) -> Replica | None:
        """A replica fresh enough to answer now (in turn), or None: ask the primary."""
        now = self._clock()
        if now - self._refreshed_at >= self.refresh_every and self._refreshing.acquire(blocking=False):
            try:
                self.refresh(now)
            finally:
                self._refreshing.release()
        fresh = [r for r in self.replicas if r.fresh(now, self.max_lag)]
        if not fresh:
            return None
        self._turn += 1
        return fresh[self._turn % len(fresh)]

    def refresh(self, now: float | None = None) -> None:
        """Sample the primary's position, then each replica's replayed one (this thread's connections)."""
        now = self._clock() if now is None else now
        self._refreshed_at = now
        try:
            self._count(1)
            position = parse_lsn(self._primary.fetch(_PRIMARY_POSITION, ())[0][0])
        except Unavailable:
            return  # without the primary no replica gets fresher; each ages out after max_lag
        self._samples.append((now, position))
        while self._samples and now - self._samples[0][0] > self.max_lag:
            self._samples.popleft()
        for replica in self.replicas:
            try:
                self._count(1)
                replayed = parse_lsn(replica.reads.fetch(_REPLAYED_POSITION, ())[0][0])
            except Unavailable as exc:
                self.failed(replica, exc)
                continue
            if replayed is None:
                self._set_problem(replica, "not a replica (pg_last_wal_replay_lsn() is NULL): not used")
                continue
            self._set_problem(replica, None)
            caught_up = [moment for moment, pos in self._samples if pos <= replayed]
            if caught_up:
                replica.current_at = max(replica.current_at or caught_up[-1], caught_up[-1])

    def failed(self, replica: Replica, exc: Exception) -> None:
        """A replica's statement failed: the primary answers until a refresh reaches it again."""
        replica.reads.close(broken=True)
        self._set_problem(replica, f"unreachable ({exc.__cause__.__class__.__name__ if exc.__cause__ else exc})")

    def _set_problem(self, replica: Replica, problem: str | None) -> None:
        if problem != replica.problem:
            if problem is None:
                self._log.info("read replica %s: in use", replica.name)
            else:
                self._log.warning("read replica %s: %s; the primary answers", replica.name, problem)
        replica.problem = problem

    def status(self) -> list[dict]:
        """Each replica's state (for /readyz and tests): lag bound in seconds, or the problem."""
        now = self._clock()
        return [{"name": r.name, "problem": r.problem,
                 "behind_seconds": None if r.current_at is None else round(now - r.current_at, 3),
                 "in_use": r.fresh(now, self.max_lag)} for r in self.replicas]

    def close(self) -> None:
        for replica in self.replicas:
            replica.reads.close()

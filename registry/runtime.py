"""The composition root of the domain: one per process (per app), built from settings.

It owns the engine, the Redis client, the Bloom index, the institution directory and the
query log, wires the services together, and runs the per-process background loop: reload the
directory when its version changes, compare the Bloom marker with the newest batch, start a
rebuild when the index lost bits, flush the query log.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from registry.bloom import BloomConfig, open_bloom_index
from registry.infra.db import make_engine, make_session_factory
from registry.institutions.directory import InstitutionDirectory
from registry.registration.models import Batch
from registry.registration.pipeline import BloomTarget
from registry.verification.querylog import QueryLogBuffer
from registry.infra.redisdirect import DirectRedis
from registry.numbers.quarters import Clock, system_clock
from registry.registration.service import RegistrationService
from registry.verification.service import VerificationService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeSettings:
    database_url: str
    redis_url: str
    bloom_dir: Path
    files_dir: Path
    secret_key: str
    bloom_capacity: int = 10_000_000
    bloom_error_rate: float = 0.001
    bloom_shards: int = 0
    background_interval: float = 3.0


def make_redis(url: str):
    import redis

    return redis.Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30, retry_on_timeout=False
    )


class Registry:
    def __init__(self, settings: RuntimeSettings, *, clock: Clock = system_clock) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = make_engine(settings.database_url)
        self.sessions = make_session_factory(self.engine)
        self.redis = make_redis(settings.redis_url) if settings.redis_url else None
        # per-thread connection for the verify hot path: the Bloom probe and the rate-limit count share its exchange
        self.hot_redis = DirectRedis(self.redis) if self.redis is not None else None
        settings.bloom_dir.mkdir(parents=True, exist_ok=True)
        settings.files_dir.mkdir(parents=True, exist_ok=True)
        self.bloom = open_bloom_index(
            config=BloomConfig(
                capacity=settings.bloom_capacity, error_rate=settings.bloom_error_rate, shards=settings.bloom_shards
            ),
            engine=self.engine,
            directory=settings.bloom_dir,
            redis=self.redis,
            hot_redis=self.hot_redis,
            logger=log,
        )
        self.directory = InstitutionDirectory()
        self.query_log = QueryLogBuffer(sessions=self.sessions, secret=settings.secret_key.encode())
        self.verifier = VerificationService(
            sessions=self.sessions, bloom=self.bloom, directory=self.directory, clock=clock
        )
        self.registration = RegistrationService(
            sessions=self.sessions, bloom=self.bloom, clock=clock,
            bloom_target=BloomTarget(
                database_url=settings.database_url, redis_url=settings.redis_url, directory=str(settings.bloom_dir),
                capacity=settings.bloom_capacity, error_rate=settings.bloom_error_rate, shards=settings.bloom_shards,
            ),
        )
        self._background_pid: int | None = None
        self._stop = threading.Event()
        self._rebuilding = threading.Lock()
        self.last_refresh_error: str | None = None

    # --- the periodic checks ----------------------------------------------------------------
    def refresh(self, *, auto_rebuild: bool = True) -> None:
        """Reload the directory if it changed; check the Bloom marker; rebuild if it lost bits."""
        try:
            with self.sessions() as session:
                self.directory.refresh(session)
                newest = session.scalar(select(func.max(Batch.id)))
            self.bloom.check_marker(newest)
            self.last_refresh_error = None
        except Exception as exc:  # keep serving from what we have; readiness reports it
            self.last_refresh_error = f"{exc.__class__.__name__}: {exc}"
            log.warning("registry refresh failed: %s", self.last_refresh_error)
            return
        if auto_rebuild and self.bloom.needs_rebuild:
            self.start_rebuild()

    def start_rebuild(self, *, wait: bool = False) -> None:
        if not self._rebuilding.acquire(blocking=False):
            return
        def run():
            try:
                log.warning("Bloom index untrusted: rebuilding from the database")
                figures = self.bloom.rebuild()
                log.warning("Bloom index rebuilt: %s", figures)
            except Exception:
                log.exception("Bloom rebuild failed; verification keeps answering from the database")
            finally:
                self._rebuilding.release()
        if wait:
            run()
        else:
            threading.Thread(target=run, name="bloom-rebuild", daemon=True).start()

    @property
    def rebuilding(self) -> bool:
        return self._rebuilding.locked()

    def ensure_background(self) -> None:
        """Start this process's background loop once (after a fork, again in the child)."""
        if self._background_pid == os.getpid():
            return
        self._background_pid = os.getpid()
        if not self.directory.loaded:
            # this process answers its first request from a loaded directory and a checked index
            self.refresh()
        interval = self.settings.background_interval
        if interval <= 0:
            return
        self._stop = threading.Event()
        threading.Thread(target=self._loop, args=(interval,), name="registry-refresh", daemon=True).start()
        atexit.register(self.close)

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self.refresh()
            self.query_log.flush()
            self._stop.wait(interval)

    def close(self) -> None:
        self._stop.set()
        self.query_log.flush()
        self.verifier.close_reader()
        try:
            self.bloom.close()
        finally:
            self.engine.dispose()
            if self.redis is not None:
                self.redis.close()

    def wait_until_trusted(self, timeout: float = 60.0) -> bool:
        """For the CLI and tests: check the index, rebuilding it here and now if it lost bits."""
        deadline = time.monotonic() + timeout
        while True:
            self.refresh(auto_rebuild=False)
            if self.bloom.needs_rebuild:
                self.start_rebuild(wait=True)
                continue
            if self.bloom.status().get("mode") == "bloom" or time.monotonic() > deadline:
                return self.bloom.status().get("mode") == "bloom"
            time.sleep(0.05)

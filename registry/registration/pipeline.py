"""Overlapping the three costs of a big import: parsing, Bloom hashing and database writes.

The caller's thread parses and hands chunks on. Bloom bits are set in a helper process once a
batch proves large (hashing is pure Python and would otherwise share one core with parsing),
and rows are loaded by a database thread (the driver releases the GIL while the server works).
Both are joined before the caller commits, so bits are still set before the rows commit. At most
a few chunks are in flight, which keeps memory constant.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Callable

IN_FLIGHT = 2
PARALLEL_AFTER_CHUNKS = 2


@dataclass(frozen=True)
class BloomTarget:
    """What a helper process needs to open the same Bloom store."""

    database_url: str
    redis_url: str
    directory: str
    capacity: int
    error_rate: float
    shards: int


_child_index = None


def _open_in_child(target: BloomTarget) -> None:
    global _child_index
    from registry.bloom import BloomConfig, open_bloom_index
    from registry.infra.db import make_engine

    redis = None
    if target.redis_url:
        import redis as redis_lib

        redis = redis_lib.Redis.from_url(target.redis_url, socket_timeout=10, socket_connect_timeout=5)
    _child_index = open_bloom_index(
        config=BloomConfig(capacity=target.capacity, error_rate=target.error_rate, shards=target.shards),
        engine=make_engine(target.database_url), directory=Path(target.directory), redis=redis,
    )


def _add_in_child(numbers: list[str], batch_id: int) -> int:
    from registry.bloom import Writer

    # not synced per chunk: an msync of a whole shard per chunk would dominate; see _sync_in_child
    Writer(_child_index).add(numbers, batch_id=batch_id, sync=False)
    return len(numbers)


def _sync_in_child() -> None:
    from registry.bloom import Writer

    Writer(_child_index).sync()


class BitsPipeline:
    """Sets bits through the caller's writer for small batches, in a helper process for large ones."""

    def __init__(self, writer, batch_id: int, target: BloomTarget | None) -> None:
        self._writer = writer
        self._batch_id = batch_id
        self._target = target
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future] = deque()
        self._chunks = 0

    def submit(self, chunk: list[str]) -> None:
        self._chunks += 1
        if self._pool is None and self._target is not None and self._chunks > PARALLEL_AFTER_CHUNKS:
            import multiprocessing

            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("forkserver"),
                initializer=_open_in_child, initargs=(self._target,),
            )
        if self._pool is None:
            self._writer.add(chunk, batch_id=self._batch_id)
            return
        while len(self._pending) >= IN_FLIGHT:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(_add_in_child, chunk, self._batch_id))

    def join(self) -> None:
        try:
            while self._pending:
                self._pending.popleft().result()
            if self._pool is not None:
                self._pool.submit(_sync_in_child).result()  # durable before the caller commits
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None


class RowsPipeline:
    """Loads chunks in a database thread; errors surface on the next submit or at join."""

    _DONE = object()

    def __init__(self, load: Callable[[list[str]], None]) -> None:
        self._load = load
        self._queue: Queue = Queue(maxsize=IN_FLIGHT)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batch-rows", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is self._DONE:
                return
            if self._error is None:
                try:
                    self._load(chunk)
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc

    def submit(self, chunk: list[str]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(chunk)

    def join(self) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

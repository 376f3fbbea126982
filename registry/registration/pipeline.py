"""Overlapping the three costs of a big import: parsing, Bloom hashing and database writes.

The file is parsed in the sandbox's child process (workflows/sandbox.py); the caller's thread
reads the numbers, hashes them and gathers a big batch's Bloom bits per shard
(``registry.bloom.BatchBits``: numpy, a fraction of a microsecond a number), which are merged
into the store once per touched shard when the batch ends, or written on the way when the
gathered offsets reach their budget (a registry of many shards); rows are loaded by a database thread
meanwhile (the driver releases the GIL while the server works). Both are joined before the
caller commits, so bits are still set before the rows commit. At most a few chunks are in
flight, which keeps memory constant. (Hashing in helper processes was measured on 2 cores and
dropped: no faster, and one more process to start; bench/import.)
"""
from __future__ import annotations

import threading
from queue import Queue
from typing import Callable

IN_FLIGHT = 2


class BitsPipeline:
    """Sets a small batch's bits through the caller's writer chunk by chunk (an API call's few
    numbers); gathers a big one's and merges them at :meth:`join`. When the gathered offsets reach
    their budget (``BatchBits.full``: a registry of many shards), they are spilled into the store
    by a thread of their own while the caller gathers on and the rows load; at most one spill at a
    time, so memory stays within two budgets."""

    def __init__(self, writer, batch_id: int) -> None:
        from registry.bloom.index import MANY

        self._writer = writer
        self._batch_id = batch_id
        self._many = MANY
        self._gathered = None
        self._spilling: threading.Thread | None = None
        self._spill_error: BaseException | None = None

    def submit(self, chunk: list[str]) -> None:
        if self._gathered is None:
            if len(chunk) < self._many:
                self._writer.add(chunk, batch_id=self._batch_id)
                return
            self._gathered = self._writer.gather()
        self._gathered.add(chunk)
        if self._gathered.full:
            self._wait_for_spill()
            part = self._gathered.detach()
            self._spilling = threading.Thread(target=self._spill, args=(part,), name="batch-bits", daemon=True)
            self._spilling.start()

    def _spill(self, part) -> None:
        try:
            self._writer.spill(part)
        except BaseException as exc:  # handed to the caller's thread
            self._spill_error = exc

    def _wait_for_spill(self) -> None:
        if self._spilling is not None:
            self._spilling.join()
            self._spilling = None
        if self._spill_error is not None:
            raise self._spill_error

    def join(self) -> None:
        """Every chunk's bits in the store (durably) before the caller commits."""
        gathered, self._gathered = self._gathered, None
        self._wait_for_spill()
        if gathered is not None:
            self._writer.merge(gathered, batch_id=self._batch_id)


class RowsPipeline:
    """Loads chunks in a database thread; errors surface on the next submit or at join."""

    _DONE = object()

    def __init__(self, load: Callable[..., None]) -> None:
        self._load = load
        self._queue: Queue = Queue(maxsize=IN_FLIGHT)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batch-rows", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is self._DONE:
                return
            if self._error is None:
                try:
                    self._load(*work)
                except BaseException as exc:  # handed to the caller's thread
                    self._error = exc

    def submit(self, *work) -> None:
        """Hand the loader its next call's arguments (a chunk of numbers, …)."""
        if self._error is not None:
            raise self._error
        self._queue.put(work)

    def join(self) -> None:
        self._queue.put(self._DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

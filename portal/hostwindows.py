"""Fixed-window hit counts shared by every worker process of one host: a small memory-mapped file.

Without Redis each gunicorn worker used to count in its own memory, so ``30/minute`` let a client
make 30 per worker. Here the counts live in one file under the instance folder, mapped by every
worker; a hit takes an exclusive ``flock`` on the file for its few reads and writes (about 2 µs).

Layout: ``SLOTS`` slots of 24 bytes — key hash (u64, 0 = free), window end (f64, epoch seconds),
count (u64). A key lives in one of ``PROBE`` slots from ``hash % SLOTS``; when all of them hold
other live windows the one ending soonest is taken over (a client may then be counted afresh:
with 65,536 slots that needs thousands of clients active in one window on one host).
:class:`HostStorage` offers the same counts to Flask-Limiter as a ``limits`` storage.
"""
from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from limits.storage import Storage

SLOTS = 1 << 16
PROBE = 8
_SLOT = struct.Struct("<Qdq")
SIZE = SLOTS * _SLOT.size


def key_hash(key: str) -> int:
    """A hash of ``key`` that every process computes alike (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1


class CountsFileError(RuntimeError):
    """The counts file could not be created or mapped (a full disk, a file-size limit, no
    permission): the message names the file and the reason, in one line."""


class HostWindows:
    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < SIZE:
                    os.ftruncate(fd, SIZE)  # grows only (a shrunk mapped file would kill its readers)
                self._map = mmap.mmap(fd, SIZE)
            finally:
                os.close(fd)
        except OSError as exc:  # ENOSPC, EFBIG (RLIMIT_FSIZE), EACCES…
            raise CountsFileError(f"{path}: the rate-limit counts file ({SIZE:,} bytes) could not be created: "
                                  f"{exc.strerror or exc.__class__.__name__} (is the disk full?)") from None
        self._path = str(path)
        self._pid = -1
        self._open()

    def _open(self) -> None:
        # flock belongs to the open file, which a forked child shares with its parent: each
        # process opens its own (checked by pid, 0.1 µs), and its threads queue on a lock first
        self._lock = threading.Lock()
        self._fd = os.open(self._path, os.O_RDWR)
        self._pid = os.getpid()

    def hit(self, keys_and_windows: list[tuple[int, float]], amount: int = 1) -> list[tuple[int, float]]:
        """Count ``amount`` hits on each (key hash, window seconds); (count, window end) for each."""
        now = time.time()
        out = []
        # the lock taken inline, not through _locked(): this runs on every verification (1.5 µs)
        if self._pid != os.getpid():
            self._open()
        mm, fd = self._map, self._fd
        with self._lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                for key, seconds in keys_and_windows:
                    offset, end, count = self._find(mm, key, now)
                    if end <= now:
                        end, count = now + seconds, 0
                    count += amount
                    _SLOT.pack_into(mm, offset, key, end, count)
                    out.append((count, end))
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        return out

    def take(self, keys_and_windows: list[tuple[int, float, int]], amount: int) -> tuple[bool, list[tuple[int, float]]]:
        """Count ``amount`` on every (key hash, window seconds, limit) only if each stays within its
        limit — all or nothing, under the one lock; (taken, [(count, window end)])."""
        now = time.time()
        with self._locked() as mm:
            found = []
            for key, seconds, limit in keys_and_windows:
                offset, end, count = self._find(mm, key, now)
                if end <= now:
                    end, count = now + seconds, 0
                found.append((offset, key, end, count, limit))
            taken = all(count + amount <= limit for _, _, _, count, limit in found)
            out = []
            for offset, key, end, count, _ in found:
                if taken:
                    count += amount
                    _SLOT.pack_into(mm, offset, key, end, count)
                out.append((count, end))
        return taken, out

    def read(self, key: int) -> tuple[int, float]:
        """(count, window end) of a live window; (0, now) when there is none."""
        now = time.time()
        with self._locked() as mm:
            _, end, count = self._find(mm, key, now)
        return (count, end) if end > now else (0, now)

    def clear(self, key: int | None = None) -> None:
        """Forget one key's window, or every window."""
        with self._locked() as mm:
            if key is None:
                mm[:] = bytes(SIZE)
                return
            offset, end, count = self._find(mm, key, time.time())
            if count:
                _SLOT.pack_into(mm, offset, 0, 0.0, 0)

    @staticmethod
    def _find(mm, key: int, now: float) -> tuple[int, float, int]:
        """The slot of ``key`` (offset, end, count), or the one it would take (count 0)."""
        start = key % SLOTS
        chosen = None
        for i in range(PROBE):
            offset = ((start + i) % SLOTS) * _SLOT.size
            slot_key, end, count = _SLOT.unpack_from(mm, offset)
            if slot_key == key:
                return offset, end, count
            if chosen is None or end < chosen[1]:  # free (0), expired, or ending soonest
                chosen = (offset, end, 0)
        return chosen

    @contextmanager
    def _locked(self):
        if self._pid != os.getpid():
            self._open()
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield self._map
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class HostStorage(Storage):
    """A ``limits`` storage on :class:`HostWindows` (fixed windows only), so the limits that
    Flask-Limiter keeps (complaints, suggestions, tracking, the upload API) are counted once per
    host too: ``RATELIMIT_STORAGE_URI = "hostfile:///path/to/file"`` when there is no Redis."""

    STORAGE_SCHEME = ["hostfile"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._windows = HostWindows(Path(urlsplit(uri).path))

    @property
    def base_exceptions(self):
        return OSError

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        return self._windows.hit([(key_hash(key), expiry)], amount)[0][0]

    def get(self, key: str) -> int:
        return self._windows.read(key_hash(key))[0]

    def get_expiry(self, key: str) -> float:
        return self._windows.read(key_hash(key))[1]

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        self._windows.clear()
        return None

    def clear(self, key: str) -> None:
        self._windows.clear(key_hash(key))

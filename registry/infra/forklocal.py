"""Per-thread slots that a forked child gets empty."""
from __future__ import annotations

import os
import threading
import weakref


class ForkLocal:
    """A ``threading.local`` (as ``.slots``) that a forked child gets empty.

    For per-thread connections: a child must never talk on its parent's socket. Emptied by an
    ``os.register_at_fork`` hook instead of comparing ``os.getpid()`` on every use. The parent's
    slots stay referenced in the child, never used: dropping them would run their finalizers
    (a pool's reset-on-return, a client's goodbye) on sockets the parent still talks on."""

    _all: weakref.WeakSet[ForkLocal] = weakref.WeakSet()
    _inherited: list = []

    def __init__(self) -> None:
        self.slots = threading.local()
        ForkLocal._all.add(self)

    @classmethod
    def _after_fork_in_child(cls) -> None:
        for holder in list(cls._all):
            cls._inherited.append(holder.slots)
            holder.slots = threading.local()


os.register_at_fork(after_in_child=ForkLocal._after_fork_in_child)

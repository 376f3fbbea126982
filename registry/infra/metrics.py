"""This process's metrics as plain counters, and their sum over every process of the host.

The verify edge answers in a few tens of microseconds, so what it counts costs a dict increment
(~0.1 µs), not a locked write into a shared memory map per metric as prometheus-client's
multiprocess mode does. Each process keeps its figures in memory and writes them, a few times a
minute (the upkeep loop) and at exit, to one file of its own in ``PROMETHEUS_MULTIPROC_DIR``
(``rnr-<pid>.json``, replaced atomically); ``/metrics`` sums the files of every process of the
host (portal/metrics.py renders them with prometheus-client). Counters of processes that exited
stay in the sum, so totals never go back when gunicorn replaces a worker; gauges count only
processes still alive. Flask-free.
"""
from __future__ import annotations

import bisect
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# seconds; a verification answered from the Bloom index takes ~0.1 ms, one with a lookup ~0.3 ms
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
COUNTERS = ("requests", "verdicts", "refusals", "bloom_false_positives", "query_log_dropped", "query_log_rejected")
GAUGES = ("query_log_buffer",)


class ProcessMetrics:
    """The figures of one process. The hot path touches ``requests``, ``verdicts``, ``refusals``
    and :meth:`observe_verify` only; everything else is read when the figures are written."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = Path(directory) if directory else None
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)  # (route, status) → n
        self.verdicts: defaultdict[str, int] = defaultdict(int)  # verdict status → n
        self.refusals: defaultdict[str, int] = defaultdict(int)  # route → 429s (rate limits and quotas)
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket, the last one above every bound
        self.latency_sum = 0.0
        self._sources: dict[str, object] = {}

    def observe_verify(self, seconds: float) -> None:
        self.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def read_from(self, **sources) -> None:
        """Objects whose figures are read at write time: ``query_log`` (a QueryLogBuffer: depth,
        dropped, rejected) and ``verifier`` (false positives of the Bloom index)."""
        self._sources.update(sources)

    # --- the file of this process -------------------------------------------------------------
    def snapshot(self) -> dict:
        query_log, verifier = self._sources.get("query_log"), self._sources.get("verifier")
        return {
            "pid": os.getpid(),
            "requests": [[route, status, n] for (route, status), n in list(self.requests.items())],
            "verdicts": dict(self.verdicts),
            "refusals": dict(self.refusals),
            "latency": list(self.latency),
            "latency_sum": self.latency_sum,
            "bloom_false_positives": getattr(verifier, "false_positives", 0),
            "query_log_dropped": getattr(query_log, "dropped", 0),
            "query_log_rejected": getattr(query_log, "rejected", 0),
            "query_log_buffer": len(query_log) if query_log is not None else 0,
        }

    def write(self) -> None:
        """Replace this process's file with its figures now (no directory: nothing to do)."""
        if self.directory is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"rnr-{os.getpid()}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.snapshot()))
            os.replace(tmp, path)
        except OSError as exc:  # metrics must never stop the loop that writes them
            log.warning("metrics: could not write this process's figures (%s)", exc.__class__.__name__)


@dataclass
class HostFigures:
    """The sum over every process of the host."""

    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    bloom_false_positives: int = 0
    query_log_dropped: int = 0
    query_log_rejected: int = 0
    query_log_buffer: int = 0
    processes: int = 0

    def add(self, snap: dict, *, alive: bool) -> None:
        for route, status, n in snap.get("requests", ()):
            self.requests[(route, int(status))] = self.requests.get((route, int(status)), 0) + int(n)
        for target, name in ((self.verdicts, "verdicts"), (self.refusals, "refusals")):
            for key, n in snap.get(name, {}).items():
                target[key] = target.get(key, 0) + int(n)
        for i, n in enumerate(snap.get("latency", ())[:len(self.latency)]):
            self.latency[i] += int(n)
        self.latency_sum += float(snap.get("latency_sum", 0.0))
        for name in ("bloom_false_positives", "query_log_dropped", "query_log_rejected"):
            setattr(self, name, getattr(self, name) + int(snap.get(name, 0)))
        if alive:
            self.query_log_buffer += int(snap.get("query_log_buffer", 0))
            self.processes += 1


def host_figures(directory: Path | None, own: ProcessMetrics) -> HostFigures:
    """Sum this process's live figures and the files of every other process in ``directory``."""
    figures = HostFigures()
    figures.add(own.snapshot(), alive=True)
    if directory is None or not Path(directory).is_dir():
        return figures
    me = os.getpid()
    for path in Path(directory).glob("rnr-*.json"):
        try:
            pid = int(path.stem.split("-", 1)[1])
            if pid == me:
                continue
            snap = json.loads(path.read_text())
        except (ValueError, OSError):  # a file being replaced, or not ours
            continue
        figures.add(snap, alive=_alive(pid))
    return figures


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

"""The child side of :mod:`workflows.sandbox`: one importer run in a fresh interpreter.

Started as ``python -m workflows.sandbox_child JOB`` (JOB: JSON from the parent — the reader,
its options, the limits); the file is on file descriptor 0, the records go to standard output.
The limits are set first, before any importer or file format library is imported, so they hold
for everything that reads the file. The record format is described in :mod:`workflows.sandbox`.
"""
from __future__ import annotations

import importlib
import json
import os
import resource
import sys

NUMBER_BATCH = 4096


def set_limits(memory_mb: int, cpu_seconds: int) -> None:
    """Address space (a reader that asks for more gets MemoryError or dies; this process only),
    CPU time (SIGXCPU, then SIGKILL a little later) and no core dumps."""
    if memory_mb > 0:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _json(tag: bytes, value) -> bytes:
    return tag + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _warnings(parsed) -> list[list[str]]:
    return [[w.code, w.message_zh, w.message_en] for w in parsed.warnings]


def _problem(p) -> list:
    return [p.line, p.location, p.raw, p.code, p.message_zh, p.message_en]


def _numbers(parsed, out) -> int:
    batch: list[str] = []
    documents = getattr(parsed, "documents", None)  # a reader of a test's own may have none
    for number in parsed.numbers():
        batch.append(number)
        if len(batch) == NUMBER_BATCH:
            _flush_numbers(batch, documents, out)
    if batch:
        _flush_numbers(batch, documents, out)
    return parsed.rows


def _flush_numbers(batch: list[str], documents: dict[str, str] | None, out) -> None:
    """The batch's document fingerprints first (a ``D`` record: number, fingerprint, … tab-separated),
    so that the parent holds them before it yields the numbers; then the numbers."""
    if documents:
        out.write(b"D" + "\t".join(f"{number}\t{digest}" for number, digest in documents.items()).encode() + b"\n")
        documents.clear()
    out.write(b"N" + "\t".join(batch).encode() + b"\n")
    batch.clear()


def _withdrawals(parsed, out) -> int:
    for w in parsed.rows():
        out.write(_json(b"W", [w.line, w.number, w.reason]))
    return parsed.rows_read


def _certificates(parsed, out) -> int:
    for c in parsed.rows():
        out.write(_json(b"C", [c.line, c.number, c.institution_name, c.uscc,
                               c.issued_on.isoformat() if c.issued_on else None,
                               c.expires_on.isoformat() if c.expires_on else None,
                               c.status, list(c.addresses), c.review_authority, c.issuing_authority_code]))
    return parsed.rows_read


STREAMS = {"numbers": _numbers, "withdrawals": _withdrawals, "certificates": _certificates}


def main() -> int:
    job = json.loads(sys.argv[1])
    set_limits(int(job["memory_mb"]), int(job["cpu_seconds"]))
    from importers.errors import FileRefused

    module, _, name = job["reader"].partition(":")
    reader = getattr(importlib.import_module(module), name)
    out = os.fdopen(1, "wb", buffering=1 << 16, closefd=False)
    source = os.fdopen(0, "rb", closefd=False)
    source.seek(int(job["start"]))
    try:
        parsed = reader(source, job["file_name"], **job["options"])
        out.write(_json(b"O", _warnings(parsed)))
        rows = STREAMS[job["kind"]](parsed, out)
    except FileRefused as exc:
        out.write(_json(b"F", [exc.code, exc.message_zh, exc.message_en, exc.filename]))
        out.flush()
        return 0
    for p in parsed.problems:
        out.write(_json(b"P", _problem(p)))
    out.write(_json(b"E", [rows, _warnings(parsed), getattr(parsed, "column", None)]))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

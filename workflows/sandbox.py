"""Uploaded files are parsed in a fresh interpreter with a memory and CPU limit.

A reader that a hostile or broken file drives to allocate without bound (an XLSX reader asked for
a sheet of half a terabyte, say) must take down only itself, never the web worker or the RQ
worker that holds the registry's mapped Bloom shards and connections. So every flow that parses
an uploaded file — portal uploads (check and import, in the request or as a job), the upload
API, withdrawal files (portal, API, CLI), certificate lists and the CLI's ``import-numbers`` —
runs the importer through :class:`Sandbox`:

* a **new interpreter** (``python -m workflows.sandbox_child``), started with ``subprocess``
  (fork + exec at once, or vfork): not a fork of the worker, which would inherit its address
  space, mapped shards included, and hit the limit at once. It gets a minimal environment (no
  database URL, no keys) and only the file, on its standard input;
* **limits set by the child first thing**, before any importer is imported: ``RLIMIT_AS``
  (``PARSE_MEMORY_MB``, default 1024), ``RLIMIT_CPU`` (``PARSE_SECONDS``, default 300) and no
  core dumps. (Setting them in the child rather than through ``preexec_fn`` keeps the spawn safe
  in a threaded web worker and lets ``subprocess`` use vfork);
* the **normalised rows stream back** over a pipe, so a file of a million numbers never sits in
  memory as one message: one record per line, a tag byte then the payload —
  ``O`` opened (the reader's warnings so far, JSON), ``N`` numbers (up to 4,096 a record,
  tab-separated: a normalised number holds no white space), ``D`` the document fingerprints of
  the numbers in the next ``N`` record (number, 64 lowercase hex, … tab-separated), ``W`` a withdrawal row and ``C`` a
  certificate row (JSON arrays), ``P`` a rejected row, ``F`` the file refused (code and both
  messages), ``E`` the end (rows read, the final warnings, the column a number file was read from). JSON, never pickle: the parent
  trusts nothing the child sends beyond these shapes;
* a child that ends any other way — ``MemoryError``, killed by the kernel or by SIGXCPU, a
  crash in a native reader, or no output for ``PARSE_SECONDS`` — becomes a
  :class:`~importers.errors.FileRefused` ``unparseable`` ("文件无法解析…"), which every caller
  already answers as a refused file: never a 500, never an upload stuck in "checking".

The objects returned behave as the importers' own (``numbers()``/``rows()`` iterated once,
``problems`` and ``warnings`` complete when iteration ends; ``FileRefused`` for the whole file
at open, or mid-stream where the importer raises it), so the flows read them as before.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import select
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from importers.certificates import CertificateRow
from importers.errors import FileRefused, FileWarning, RowProblem
from importers.withdrawals import Withdrawal
from registry.infra.settings import ROOT
from registry.numbers.normalize import MAX_NUMBER_LENGTH

log = logging.getLogger(__name__)

DEFAULT_MEMORY_MB = 1024
DEFAULT_SECONDS = 300
READ_CHUNK = 1 << 20

READERS = {
    "numbers": "importers.numbers:read_report_numbers",
    "withdrawals": "importers.withdrawals:read_withdrawals",
    "certificates": "importers.certificates:read_certificates",
}
# what the child may see of this process's environment: nothing secret
# PYTHONDONTWRITEBYTECODE: a parent that writes no bytecode (a full disk: a ``.pyc`` cut short at
# the limit is renamed into place all the same) has children that write none either
_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SYSTEMROOT", "PYTHONDONTWRITEBYTECODE")


def unparseable(filename: str) -> FileRefused:
    return FileRefused(
        "unparseable",
        "文件无法解析：读取它所需的内存或时间超出上限，已拒绝；请确认文件完好（用 Excel 重新保存），或拆分成较小的文件后上传",
        "the file could not be parsed: reading it needed more memory or time than allowed; refused — check that "
        "the file is intact (save it again from Excel) or split it into smaller files",
        filename=filename,
    )


class Sandbox:
    """Runs the importers in a limited child interpreter; one per process (the composition root).

    ``readers`` maps a kind (``numbers``, ``withdrawals``, ``certificates``) to the reader the
    child calls, as ``module:function``; tests point a kind at a reader of their own."""

    def __init__(self, *, memory_mb: int = DEFAULT_MEMORY_MB, seconds: int = DEFAULT_SECONDS,
                 readers: dict[str, str] | None = None) -> None:
        self.memory_mb = memory_mb
        self.seconds = seconds
        self.readers = dict(READERS, **(readers or {}))

    def report_numbers(self, fh: BinaryIO, file_name: str, **options: Any) -> SandboxedNumbers:
        """As :func:`importers.numbers.read_report_numbers`; raises ``FileRefused`` at open."""
        return SandboxedNumbers(self._start("numbers", fh, file_name, options), file_name)

    def withdrawals(self, fh: BinaryIO, file_name: str, **options: Any) -> SandboxedWithdrawals:
        """As :func:`importers.withdrawals.read_withdrawals`."""
        return SandboxedWithdrawals(self._start("withdrawals", fh, file_name, options), file_name)

    def certificates(self, fh: BinaryIO, file_name: str, **options: Any) -> SandboxedCertificates:
        """As :func:`importers.certificates.read_certificates`."""
        return SandboxedCertificates(self._start("certificates", fh, file_name, options), file_name)

    def _start(self, kind: str, fh: BinaryIO, file_name: str, options: dict[str, Any]) -> _Child:
        spec = {"kind": kind, "reader": self.readers[kind], "file_name": file_name, "options": options,
                "memory_mb": self.memory_mb, "cpu_seconds": self.seconds}
        return _Child(spec, fh, timeout=self.seconds)


def _own_descriptor(fh: BinaryIO) -> tuple[int, int] | None:
    """A new open file description of ``fh``'s file (its own offset: the parent's buffered
    position is left alone) and the position to start at; None when ``fh`` is no regular file."""
    try:
        fd = fh.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        start = fh.tell()
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC), start
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


def _spooled(fh: BinaryIO) -> tuple[int, int]:
    """A copy of ``fh`` from its position in an unnamed temporary file (an in-memory upload, a pipe)."""
    start = fh.tell() if fh.seekable() else None
    copy = tempfile.TemporaryFile()
    try:
        shutil.copyfileobj(fh, copy, READ_CHUNK)
        copy.flush()
        fd = os.dup(copy.fileno())
    finally:
        copy.close()
        if start is not None:
            fh.seek(start)
    return fd, 0


class _Child:
    """One child process and the records it writes."""

    def __init__(self, spec: dict[str, Any], fh: BinaryIO, *, timeout: float) -> None:
        self.file_name = spec["file_name"]
        self._timeout = timeout
        source = _own_descriptor(fh) or _spooled(fh)
        fd, spec["start"] = source
        env = {k: os.environ[k] for k in _ENVIRONMENT if k in os.environ}
        env["PYTHONPATH"] = str(ROOT)
        self._stderr = tempfile.TemporaryFile()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *(["-B"] if sys.dont_write_bytecode else []), "-m", "workflows.sandbox_child",
                 json.dumps(spec)],
                stdin=fd, stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=str(ROOT), close_fds=True)
        except OSError as exc:  # no process could be started (EAGAIN, ENOMEM): refused, not a 500
            self._stderr.close()
            log.warning("parsing %r: could not start the reader: %s", self.file_name, exc)
            raise unparseable(self.file_name) from None
        finally:
            os.close(fd)
        self._lines = self._read_lines()

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """(tag, payload) until the end record; a child that stops otherwise raises ``unparseable``.
        ``F`` is raised as the ``FileRefused`` it carries."""
        for line in self._lines:
            tag, payload = line[:1], line[1:]
            if tag == b"F":
                code, zh, en, filename = json.loads(payload)
                refused = FileRefused(code, zh, en)
                refused.filename = filename
                self.close()
                raise refused
            yield tag, payload
            if tag == b"E":
                self.close()
                return
        self._died()

    def _read_lines(self) -> Iterator[bytes]:
        stdout = self.proc.stdout
        fd = stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        tail = b""
        while True:
            if not poller.poll(self._timeout * 1000):
                log.warning("parsing %r: no output for %s s; stopped", self.file_name, self._timeout)
                return
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                return
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield from lines

    def _died(self) -> None:
        proc = self.proc
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        last = ""
        if not self._stderr.closed:
            self._stderr.seek(0)
            last = (self._stderr.read()[-2000:].decode(errors="replace").strip().splitlines() or [""])[-1]
        log.warning("parsing %r: the reader stopped (exit status %s) %s", self.file_name, proc.returncode, last[:300])
        self.close()
        raise unparseable(self.file_name)

    def close(self) -> None:
        """Stop the child if it still runs (an abandoned read) and reap it."""
        proc = self.proc
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()

    def __del__(self) -> None:
        try:
            if hasattr(self, "proc"):
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _warnings(payload: list) -> list[FileWarning]:
    return [FileWarning(*w) for w in payload]


_COLUMN_KEYS = {"header": str, "letter": str, "position": int, "sheet": str, "line": int}


def _column(value: Any) -> dict | None:
    """The column a number file was read from (importers.numbers.NumberFile.column), kept only
    in its expected shape: short strings and integers under known keys."""
    if not isinstance(value, dict):
        return None
    column = {}
    for key, kind in _COLUMN_KEYS.items():
        item = value.get(key)
        ok = isinstance(item, kind) and not isinstance(item, bool) and (kind is int or len(item) <= 200)
        column[key] = item if ok else None
    return column


class _Sandboxed:
    """The common part: opened at construction (a refused file raises here), then one pass."""

    def __init__(self, child: _Child, filename: str) -> None:
        self.filename = filename
        self.problems: list[RowProblem] = []
        self.warnings: list[FileWarning] = []
        self._child = child
        self._records = child.records()
        self._started = False
        tag, payload = next(self._records, (b"", b""))
        if tag != b"O":  # records() raised for a refusal or a dead child; anything else is malformed
            child.close()
            raise unparseable(filename)
        self.warnings = _warnings(json.loads(payload))
        self._rows = 0
        self.column: dict | None = None

    def _payloads(self, wanted: bytes, side: dict[bytes, Any] | None = None) -> Iterator[bytes]:
        """The payloads tagged ``wanted``; ``side`` maps other tags to a function taking theirs."""
        if self._started:
            raise RuntimeError("a sandboxed file can be iterated once")
        self._started = True
        try:
            for tag, payload in self._records:
                if tag == wanted:
                    yield payload
                elif side is not None and tag in side:
                    side[tag](payload)
                elif tag == b"P":
                    self.problems.append(RowProblem(*json.loads(payload)))
                elif tag == b"E":
                    rows, warnings, *column = json.loads(payload)
                    self._rows = rows
                    self.warnings = _warnings(warnings)
                    self.column = _column(column[0] if column else None)
                else:
                    raise unparseable(self.filename)
        finally:
            self._child.close()

    def close(self) -> None:
        self._child.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SandboxedNumbers(_Sandboxed):
    """As :class:`importers.numbers.NumberFile` (its ``documents`` filled before the numbers
    they belong to are yielded)."""

    def __init__(self, child: _Child, filename: str) -> None:
        super().__init__(child, filename)
        self.documents: dict[str, str] = {}

    @property
    def rows(self) -> int:
        return self._rows

    def numbers(self) -> Iterator[str]:
        for payload in self._payloads(b"N", {b"D": self._documents}):
            yield from payload.decode().split("\t")

    def _documents(self, payload: bytes) -> None:
        """A ``D`` record: (number, fingerprint) pairs, each in its expected shape or the file is unparseable."""
        fields = payload.decode().split("\t")
        pairs = dict(zip(fields[::2], fields[1::2]))
        if len(fields) % 2 or not all(0 < len(n) <= MAX_NUMBER_LENGTH and _FINGERPRINT.fullmatch(d)
                                      for n, d in pairs.items()):
            raise unparseable(self.filename)
        self.documents.update(pairs)


_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


class SandboxedWithdrawals(_Sandboxed):
    """As :class:`importers.withdrawals.WithdrawalFile`."""

    @property
    def rows_read(self) -> int:
        return self._rows

    def rows(self) -> Iterator[Withdrawal]:
        for payload in self._payloads(b"W"):
            line, number, reason = json.loads(payload)
            yield Withdrawal(line, number, reason)


class SandboxedCertificates(_Sandboxed):
    """As :class:`importers.certificates.CertificateFile`."""

    @property
    def rows_read(self) -> int:
        return self._rows

    def rows(self) -> Iterator[CertificateRow]:
        for payload in self._payloads(b"C"):
            (line, number, name, uscc, issued, expires, status, addresses, review,
             authority) = json.loads(payload)
            yield CertificateRow(line, number, name, uscc, _date(issued), _date(expires), status,
                                 tuple(addresses), review, authority)


def _date(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None

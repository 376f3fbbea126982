"""What every command shares: the one-line refusal (exit 2), opening the input, printing rejected rows."""
from __future__ import annotations

import atexit
import functools
import gc
import sys

import click

from registry.institutions.service import get_institution_by_uscc
from registry.numbers.normalize import InvalidValue


@functools.cache  # once per process
def no_final_collection() -> None:
    """Called by a command that built a big heap (an import, a rebuild) once its work is done and
    committed: the process then ends without the interpreter's final collection of everything it
    made, which took 0.7–0.9 s after a 1 M-number import (bench/import) for memory the OS takes
    back anyway. ``gc.freeze()`` from an exit handler moves the heap out of the collector's reach;
    the other exit handlers (the query log's flush, …) still run, and objects freed by reference
    counting are still freed. Only these commands: a process that may still hold unflushed work in
    reference cycles at exit keeps the final collection."""
    atexit.register(gc.freeze)


def refuse(message: str) -> None:
    """Print one line and exit 2: the input was refused, nothing changed."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def institution(session, uscc: str):
    try:
        inst = get_institution_by_uscc(session, uscc)
    except InvalidValue as exc:
        refuse(f"--institution {uscc}: {exc}")
    if inst is None:
        refuse(f"--institution {uscc}: no institution with this unified social credit code is registered")
    return inst


def open_input(path: str):
    try:
        return open(path, "rb")
    except OSError as exc:
        refuse(f"{path}: cannot open ({exc.strerror})")


def echo_problems(filename: str, problems, limit: int = 20) -> None:
    for p in problems[:limit]:
        where = p.location or (f"line {p.line}" if p.line else "")
        click.echo(f"{filename}:{where}: {p.raw!r}: {p.message_en} / {p.message_zh}", err=True)
    if len(problems) > limit:
        click.echo(f"… and {len(problems) - limit} more rejected rows (use --rejected-csv to list them all)", err=True)


def echo_rejected_csv_error(path: str | None, error: str | None, stands: str) -> None:
    """The one line of a ``--rejected-csv`` that could not be written (a full disk): the changes,
    already made, stand (``stands`` says which); nothing half-written is left at ``path``."""
    if error:
        click.echo(f"error: {path}: the rejected rows could not be written ({error}); {stands}", err=True)


class Progress:
    """A progress line on a terminal, nothing otherwise."""

    def __init__(self, label: str):
        self.enabled = sys.stderr.isatty()
        self.label = label

    def __call__(self, done: int) -> None:
        if self.enabled:
            click.echo(f"\r{self.label}: {done:,} numbers", err=True, nl=False)

    def close(self) -> None:
        if self.enabled:
            click.echo("", err=True)

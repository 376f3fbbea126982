"""Readers that misbehave as a hostile file could make a real one misbehave; the sandbox tests
point a kind at one of them (``Sandbox.readers``). They run only in the sandbox's child."""
from __future__ import annotations

import os
import signal

from importers.numbers import read_report_numbers


def allocate(fileobj, filename, **options):
    """Asks for far more memory than the limit, as calamine did for a sheet spanning A1:XFD1048576."""
    hoard = []
    while True:
        hoard.append(bytearray(256 * 1024 * 1024))


def crash(fileobj, filename, **options):
    """A native reader that segfaults."""
    os.kill(os.getpid(), signal.SIGSEGV)


def spin(fileobj, filename, **options):
    """A reader stuck in a loop: the CPU limit stops it."""
    while True:
        pass


def allocate_midway(fileobj, filename, **options):
    """Opens the file and yields some numbers, then runs out of memory."""
    parsed = read_report_numbers(fileobj, filename, **options)

    class Midway:
        problems, warnings, rows = parsed.problems, parsed.warnings, 0

        def numbers(self):
            for i, number in enumerate(parsed.numbers()):
                if i == 10_000:
                    allocate(fileobj, filename)
                yield number

    return Midway()


def forged_documents(fileobj, filename, **options):
    """Sends a document-fingerprint record that is not a (number, 64-hex) pair (and ends well)."""
    import sys

    out = sys.stdout.buffer
    out.write(b"O[]\n")
    out.write(b"DA-1\tnot-a-digest\n")
    out.write(b"NA-1\n")
    out.write(b"E[1,[],null]\n")
    out.flush()
    os._exit(0)

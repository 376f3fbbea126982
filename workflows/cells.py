"""Cells safe to open in a spreadsheet (CSV injection).

A text cell that begins with ``= + - @``, a tab or a carriage return would be read as a formula
by Excel, WPS or LibreOffice; such cells get a leading apostrophe. Every file the product writes
for people to open (exports, rejected rows) goes through :func:`neutralise`; it is idempotent.
"""
from __future__ import annotations

from typing import Any

DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A cell value that no spreadsheet will evaluate: text starting like a formula gets a quote."""
    if isinstance(value, str) and value.startswith(DANGEROUS):
        return "'" + value
    return value

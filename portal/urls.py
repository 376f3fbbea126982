"""URL arguments that cannot reach the database out of range.

Every ``<int:...>`` in a route is bounded by :class:`BoundedIntConverter` (registered as ``int``
before the blueprints): an id no 64-bit column can hold does not match the route (404) instead
of overflowing in the driver. :func:`int_arg` does the same for query arguments (400).
"""
from __future__ import annotations

from flask import abort, request
from werkzeug.routing import IntegerConverter

MAX_ID = 2**63 - 1  # BIGINT, and SQLite's integer


class BoundedIntConverter(IntegerConverter):
    def __init__(self, map, fixed_digits=0, min=None, max=None, signed=False):  # noqa: A002 - werkzeug's names
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=MAX_ID if max is None else max, signed=signed)


def int_arg(name: str, *, low: int = 1, high: int = MAX_ID) -> int | None:
    """A positive integer query argument: None when absent, 400 when not an integer in range."""
    text = request.args.get(name, "").strip()
    if not text:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not low <= int(text) <= high:
        abort(400)
    return int(text)


def init_app(app) -> None:
    app.url_map.converters["int"] = BoundedIntConverter

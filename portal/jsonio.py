"""JSON responses (orjson), keeping Chinese text readable."""
from __future__ import annotations

import re
from typing import Iterable

import orjson
from flask import Response

_SPLITS_A_HEADER = re.compile(r"[\r\n\0]").search


def json_response(payload, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A JSON response with ``headers`` (the security headers are added after the request). A header
    name or value with a line break or NUL — a split response — is refused with ValueError."""
    extra = [(name, str(value)) for name, value in headers]
    for name, value in extra:
        if _SPLITS_A_HEADER(name) or _SPLITS_A_HEADER(value):
            raise ValueError("header names and values must not contain line breaks or NUL")
    return Response(orjson.dumps(payload), status=status, headers=extra, mimetype="application/json")

"""Fast JSON responses (orjson), keeping Chinese text readable."""
from __future__ import annotations

from typing import Iterable

import orjson
from flask import Response

from .security import SECURITY_HEADERS


def json_response(payload, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A JSON response carrying the security headers and ``headers``, built in one step (hot path)."""
    return Response(
        orjson.dumps(payload), status=status, content_type="application/json",
        headers=[*SECURITY_HEADERS, *headers],
    )

"""CORS: which browser pages may read which API answers (docs/contract.md, "CORS").

- the single verify (``/api/v1/verify``), suggestions and this API's OpenAPI document: any origin,
  without credentials — ``Access-Control-Allow-Origin: *`` and never ``Allow-Credentials``;
- bulk verify: only the origins registered on the platform key, never with cookies
  (:func:`bulk_headers`, :func:`bulk_preflight`);
- the upload API: no CORS headers at all (server to server).

The public headers are precomputed tuples, so the verify edge adds them with one tuple concat.
"""
from __future__ import annotations

from typing import Callable, Collection

# what a page may read beside the CORS-safelisted response headers
EXPOSED = "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, Retry-After"
MAX_AGE = "86400"

PUBLIC = (("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", EXPOSED))
PUBLIC_PREFLIGHT = (*PUBLIC, ("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS"),
                    ("Access-Control-Max-Age", MAX_AGE))

BULK_METHODS = "POST, OPTIONS"
BULK_REQUEST_HEADERS = "Authorization, Content-Type"
_VARY = (("Vary", "Origin"),)


def origin_allowed(origin: str | None, allowed: Collection[str]) -> bool:
    """A browser origin registered on the key (``https://example.com``, compared exactly, without
    a trailing slash); no ``Origin`` header (a server) is not a browser and needs none."""
    return bool(origin) and origin.rstrip("/") in allowed


def bulk_headers(origin: str | None, allowed: Collection[str]) -> tuple[tuple[str, str], ...]:
    """Headers of a bulk answer for the request's ``Origin`` and the origins on its key: the origin
    echoed when the key registered it, else none (the browser then keeps the answer from the page).
    ``Vary: Origin`` always, so a shared cache never serves one origin's answer to another."""
    if origin_allowed(origin, allowed):
        return (("Access-Control-Allow-Origin", origin), ("Access-Control-Expose-Headers", EXPOSED), *_VARY)
    return _VARY


def bulk_preflight(origin: str | None, registered: Callable[[str], bool]) -> tuple[tuple[str, str], ...]:
    """Headers of ``OPTIONS /api/v1/verify/bulk``. A preflight carries no key, so it is answered
    for an origin that some live platform key registered (``registered(origin)``); the answer to
    the request itself is then checked against its own key (:func:`bulk_headers`)."""
    if origin and registered(origin.rstrip("/")):
        return (("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Methods", BULK_METHODS),
                ("Access-Control-Allow-Headers", BULK_REQUEST_HEADERS), ("Access-Control-Max-Age", "600"), *_VARY)
    return _VARY

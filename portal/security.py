"""HTTP security headers on every response (the portal serves no inline script or style)."""
from __future__ import annotations

from flask import Flask

CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


SECURITY_HEADERS = tuple(HEADERS.items())


def _secure(response):
    if "Content-Security-Policy" not in response.headers:
        response.headers.extend(SECURITY_HEADERS)
    if response.mimetype == "text/html":
        # the page's language comes from the ?lang cookie, so caches must keep them apart
        response.vary.add("Cookie")
    return response


def init_app(app: Flask) -> None:
    app.after_request(_secure)

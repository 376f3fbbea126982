"""QR codes (segno) that open the verdict page of one report number: ``/v/<uscc>/<number>``.

The link starts with the ``PUBLIC_BASE_URL`` setting, never with the request's Host header (a
forged Host would otherwise print codes that lead elsewhere).

The number is percent-encoded as one path segment (``quote(number, safe="")``), so a ``/`` in a
report number survives the trip through a phone's camera app.
"""
from __future__ import annotations

import io
from urllib.parse import quote

import segno


def verify_link(base_url: str, uscc: str, number: str) -> str:
    return f"{base_url.rstrip('/')}/v/{quote(uscc, safe='')}/{quote(number, safe='')}"


def public_verify_link(uscc: str, number: str) -> str:
    """The deep link under this deployment's public address."""
    from flask import current_app

    return verify_link(current_app.config["PUBLIC_BASE_URL"], uscc, number)


def _code(link: str):
    return segno.make(link, error="m", micro=False)


def svg_bytes(link: str, *, scale: int = 4) -> bytes:
    out = io.BytesIO()
    _code(link).save(out, kind="svg", scale=scale, border=2, xmldecl=False)
    return out.getvalue()


def svg_inline(link: str, *, scale: int = 3) -> str:
    """An ``<svg>`` element for embedding in a printable page (no inline style: CSP)."""
    return _code(link).svg_inline(scale=scale, border=2, svgclass="qr", lineclass=None, omitsize=False)


def png_bytes(link: str, *, scale: int = 8) -> bytes:
    out = io.BytesIO()
    _code(link).save(out, kind="png", scale=scale, border=2)
    return out.getvalue()

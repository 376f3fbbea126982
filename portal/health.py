"""Liveness and readiness (exempt from rate limits).

Readiness is public: it names the failing part and the kind of error only, never an error's
text (a database error names the host, port and database).
"""
from __future__ import annotations

from sqlalchemy import text

from flask import Blueprint

from .extensions import limiter, registry
from .jsonio import json_response

bp = Blueprint("health", __name__)


def error_kind(error: str) -> str:
    """The exception class of an error text like ``"OperationalError: connection to ..."``."""
    kind = error.split(":", 1)[0].strip()
    return kind if kind.isidentifier() else "error"


@bp.get("/healthz")
@limiter.exempt
def healthz():
    return json_response({"status": "ok"})


@bp.get("/readyz")
@limiter.exempt
def readyz():
    reg = registry()
    parts: dict[str, dict] = {}
    try:
        with reg.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        parts["database"] = {"status": "ok", "backend": reg.engine.dialect.name}
    except Exception as exc:  # noqa: BLE001 - report, don't crash
        parts["database"] = {"status": "down", "error": exc.__class__.__name__}
    if reg.redis is not None:
        try:
            reg.redis.ping()
            parts["redis"] = {"status": "ok"}
        except Exception as exc:  # noqa: BLE001
            parts["redis"] = {"status": "degraded", "error": exc.__class__.__name__}
    bloom = reg.bloom.status()
    degraded_bloom = bloom.get("mode") != "bloom" or bloom.get("rebuilding") or bloom.get("degraded")
    parts["bloom"] = {"status": "degraded" if degraded_bloom else "ok", **bloom}
    parts["directory"] = {
        "status": "ok" if reg.directory.loaded else "degraded",
        "institutions": len(reg.directory),
        "version": reg.directory.version,
    }
    # the complaint audit chain's key: derived from SECRET_KEY on PostgreSQL means a SECRET_KEY
    # rotation would leave every seal unverifiable (set AUDIT_KEY or AUDIT_KEYS)
    parts["audit"] = ({"status": "degraded", "key": "derived_from_secret_key"} if reg.audit_key_missing
                      else {"status": "ok", "key": "configured" if reg.audit_chain.configured else "derived_from_secret_key"})
    if reg.last_refresh_error:
        parts["directory"]["status"] = "degraded"
        parts["directory"]["error"] = error_kind(reg.last_refresh_error)
    down = parts["database"]["status"] == "down"
    degraded = sorted(name for name, part in parts.items() if part["status"] != "ok")
    body = {"status": "down" if down else ("degraded" if degraded else "ok"), "parts": parts, "degraded": degraded}
    response = json_response(body, status=503 if down else 200)
    response.headers["Cache-Control"] = "no-store"
    return response

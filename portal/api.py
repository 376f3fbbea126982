"""The JSON API served by Flask (``/api/v1``): institution suggestions, and what the verify
routes share. ``/api/v1/verify`` itself is served by the verify edge (portal/edge.py) in front
of Flask; the upload API is portal/upload_api.py."""
from __future__ import annotations

from flask import Blueprint, current_app, request

from .extensions import client_address, limiter, registry
from .jsonio import json_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Suggestions are asked as the user types (debounced), so they get more room than verification.
DEFAULT_SUGGEST_LIMIT = "60/minute;2000/day"
MAX_SUGGESTIONS = 8


def suggest_limit() -> str:
    return current_app.config.get("RATELIMIT_SUGGEST", DEFAULT_SUGGEST_LIMIT)


def log_query(verdict, institution_text: str | None) -> None:
    """Write a verification of an HTML page to the query log (the edge writes its own)."""
    registry().query_log.record(
        at=verdict.checked_at,
        number=verdict.number,
        institution_text=institution_text,
        institution_id=verdict.institution.id if verdict.institution else None,
        status=verdict.status,
        client_address=client_address(),
    )


@bp.get("/institutions/suggest")
@limiter.limit(suggest_limit)
def suggest():
    """Names, former names, USCC and certificate numbers, from the in-process directory (no SQL)."""
    text = request.args.get("q", "")[:100]
    found = registry().directory.suggest(text, limit=MAX_SUGGESTIONS)
    response = json_response({
        "suggestions": [{"name": i.name, "uscc": i.uscc, "former_names": list(i.former_names)} for i in found]
    })
    response.headers["Cache-Control"] = "private, max-age=60"
    return response

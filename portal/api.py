"""The JSON API (``/api/v1``): verification for integrators."""
from __future__ import annotations

from flask import Blueprint, g, request

from registry.numbers.normalize import InvalidValue
from registry.verification.service import Unavailable

from .errors import api_error
from .extensions import client_address, limiter, query_arg, registry
from .jsonio import json_response
from .ratelimit import verify_limiter

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def log_query(verdict, raw_number: str, institution_text: str | None) -> None:
    registry().query_log.record(
        at=verdict.checked_at,
        number=verdict.number if verdict else raw_number,
        institution_text=institution_text,
        institution_id=verdict.institution.id if verdict and verdict.institution else None,
        status=verdict.status if verdict else "invalid",
        client_address=client_address(),
    )


@bp.get("/verify")
@limiter.exempt
@verify_limiter.limit
def verify():
    number = request.args.get("number", "")
    institution = query_arg("institution") or None
    if not number.strip():
        return api_error(400, "invalid_number", "the query parameter 'number' is required")
    try:
        verdict = registry().verifier.verify(number, institution, admit=g.rate_pending.admit)
    except InvalidValue as exc:
        return api_error(400, "invalid_number", str(exc))
    except Unavailable as exc:
        return api_error(503, "unavailable", str(exc))
    log_query(verdict, number, institution)
    return json_response(verdict.to_json(), headers=[("Cache-Control", "no-store")])  # the limiter adds its own

"""The JSON API served by Flask (``/api/v1``): institution suggestions, and what the verify
routes share, the API's OpenAPI document and the snapshot's public key. ``/api/v1/verify`` itself is served by the verify
edge (portal/edge.py) in front of Flask; the upload API is portal/upload_api.py."""
from __future__ import annotations

import hashlib
from functools import lru_cache

from flask import Blueprint, Response, current_app, request

from registry.infra.settings import ROOT

from . import cors
from .extensions import client_address, limiter, registry
from .jsonio import json_response

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Suggestions are asked as the user types (debounced), so they get more room than verification.
DEFAULT_SUGGEST_LIMIT = "60/minute;2000/day"
MAX_SUGGESTIONS = 8
OPENAPI_PATH = ROOT / "docs" / "openapi.json"  # the OpenAPI 3.1 description, kept true by tests


@bp.after_request
def _cors(response):
    """Everything on this blueprint is public: readable from any origin, without credentials."""
    response.headers.extend(cors.PUBLIC_PREFLIGHT if request.method == "OPTIONS" else cors.PUBLIC)
    return response


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


@bp.get("/snapshot/key")
def snapshot_key():
    """The public half of the offline snapshot's signing key (Ed25519), for clients to pin."""
    signer = registry().snapshots.signer
    response = json_response({"algorithm": "Ed25519", "key_id": signer.key_id, "public_key": signer.public_raw,
                              "public_key_pem": signer.public_pem})
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


@lru_cache(maxsize=1)
def _openapi_document() -> tuple[bytes, str]:
    data = OPENAPI_PATH.read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 description of the public and integration API (docs/openapi.json)."""
    data, etag = _openapi_document()
    response = Response(data, mimetype="application/json")
    response.set_etag(etag)
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response.make_conditional(request)

"""The transparency log's public routes (``/log/…``, docs/transparency.md): the newest signed
checkpoint, the verifier keys, inclusion and consistency proofs, and entries — all read from what
the integrator stored; no route here signs or changes anything. Public, readable from any
origin, limited by ``RATELIMIT_LOG``; errors in the API's JSON shape."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from registry.tlog.service import BeyondTree, LogRangeError

from . import cors
from .errors import api_error
from .extensions import limiter, registry
from .jsonio import json_response

bp = Blueprint("log", __name__, url_prefix="/log")

DEFAULT_LIMIT = "120/minute;20000/day"
MAX_INDEX = 2 ** 62  # bounds what int() accepts before the range checks speak


def log_limit() -> str:
    return current_app.config.get("RATELIMIT_LOG", DEFAULT_LIMIT)


@bp.after_request
def _headers(response):
    response.headers.extend(cors.PUBLIC_PREFLIGHT if request.method == "OPTIONS" else cors.PUBLIC)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _text(body: str) -> Response:
    return Response(body, mimetype="text/plain", content_type="text/plain; charset=utf-8")


def _answer(names: tuple[str, ...], call):
    """Parse the whole-number query parameters ``names`` and answer ``call(*values)`` as JSON:
    400 for a malformed parameter or a bad range, 404 beyond the newest checkpoint."""
    values = []
    for name in names:
        raw = request.args.get(name, "")
        if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or int(raw) > MAX_INDEX:
            return api_error(400, "invalid_request", f"the query parameter '{name}' must be a whole number ≥ 0")
        values.append(int(raw))
    try:
        return json_response(call(*values))
    except LogRangeError as exc:
        return api_error(400, "invalid_request", str(exc))
    except BeyondTree as exc:
        return api_error(404, "not_found", str(exc))


@bp.get("/checkpoint")
@limiter.shared_limit(log_limit, scope="log")
def checkpoint():
    """The newest signed tree head: a C2SP tlog-checkpoint in a signed note."""
    newest = registry().tlog.checkpoint()
    if newest is None:
        return api_error(404, "not_found", "the log has no checkpoint yet")
    return _text(newest.note)


@bp.get("/key")
@limiter.shared_limit(log_limit, scope="log")
def key():
    """The verifier keys (Go sumdb/note format), current first, one a line."""
    keys = registry().tlog.keys()
    if not keys:
        return api_error(404, "not_found", "the log has signed nothing yet")
    return _text("".join(k + "\n" for k in keys))


@bp.get("/proof")
@limiter.shared_limit(log_limit, scope="log")
def proof():
    """``{"leaf_index", "tree_size", "inclusion"}`` for 0 ≤ index < size ≤ the newest size."""
    return _answer(("index", "size"), lambda index, size: {
        "leaf_index": index, "tree_size": size, "inclusion": registry().tlog.inclusion(index, size)})


@bp.get("/consistency")
@limiter.shared_limit(log_limit, scope="log")
def consistency():
    """``{"consistency"}`` between tree sizes 1 ≤ from ≤ to ≤ the newest size."""
    return _answer(("from", "to"), lambda old, new: {"consistency": registry().tlog.consistency(old, new)})


@bp.get("/entries")
@limiter.shared_limit(log_limit, scope="log")
def entries():
    """``{"entries": [{"leaf_index", "entry"}]}`` for start ≤ i < end, at most 1,000."""
    return _answer(("start", "end"), lambda start, end: {"entries": registry().tlog.entries(start, end)})

"""Public pages: search form, verdict page, QR deep link, and institution suggestions."""
from __future__ import annotations

from flask import Blueprint, current_app, g, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from registry.numbers.normalize import InvalidValue
from registry.verification.service import Unavailable

from .api import log_query
from .errors import error_response
from .extensions import limiter, query_arg, registry
from .ratelimit import verify_limiter
from .jsonio import json_response

bp = Blueprint("public", __name__)

# Suggestions are asked as the user types (debounced), so they get more room than verification.
DEFAULT_SUGGEST_LIMIT = "60/minute;2000/day"
MAX_SUGGESTIONS = 8
MAX_NEAR_NAMES = 5

INVALID_NUMBER = {
    "empty": _l("请输入报告编号。"),
    "too_long": _l("报告编号过长：最多 64 个字符。"),
    "bad_character": _l("报告编号含有不允许的字符：请按报告上印制的编号输入。"),
}


def suggest_limit() -> str:
    return current_app.config.get("RATELIMIT_SUGGEST", DEFAULT_SUGGEST_LIMIT)


def _search_page(number: str, institution: str, error: str | None = None, status: int = 200):
    return render_template("index.html", number=number, institution=institution, error=error), status


@bp.get("/")
def index():
    return _search_page(request.args.get("number", "")[:200], request.args.get("institution", "")[:200])


def _verdict_page(number: str, institution: str | None):
    if not number.strip():
        return _search_page("", institution or "", _("请输入报告编号。"), 400)
    try:
        verdict = registry().verifier.verify(number, institution, admit=g.rate_pending.admit)
    except InvalidValue as exc:
        message = INVALID_NUMBER.get(exc.code, INVALID_NUMBER["bad_character"])
        return _search_page(number, institution or "", str(message), 400)
    except Unavailable:
        return error_response(503)
    log_query(verdict, number, institution)
    response = current_app.make_response(render_template(
        "verdict.html", verdict=verdict, raw_number=number, institution_text=institution or "",
        near_names=_near_names(verdict, institution)))
    response.headers["Cache-Control"] = "no-store"
    return response


def _near_names(verdict, institution: str | None) -> list:
    """"Did you mean …" for an institution that was given but not matched (in-process, no SQL)."""
    if verdict.institution_resolved is not False:
        return []
    return registry().directory.near(institution, limit=MAX_NEAR_NAMES)


@bp.get("/verify")
@limiter.exempt
@verify_limiter.limit
def verify():
    return _verdict_page(request.args.get("number", ""), query_arg("institution") or None)


@bp.get("/v/<uscc>/<path:number>")
@limiter.exempt
@verify_limiter.limit
def deep_link(uscc: str, number: str):
    return _verdict_page(number, uscc)


@bp.get("/api/v1/institutions/suggest")
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

"""Public pages: search form, verdict page, QR deep link."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request

from registry.normalize import InvalidValue
from registry.verification import Unavailable

from .api import log_query, verify_limit
from .errors import error_response
from .extensions import limiter, registry

bp = Blueprint("public", __name__)


@bp.get("/")
def index():
    return render_template("index.html", number="", institution="")


def _verdict_page(number: str, institution: str | None):
    if not number.strip():
        return render_template("index.html", number="", institution=institution or "", error="请输入报告编号。"), 400
    try:
        verdict = registry().verifier.verify(number, institution)
    except InvalidValue as exc:
        return render_template("index.html", number=number, institution=institution or "", error=str(exc)), 400
    except Unavailable:
        return error_response(503)
    log_query(verdict, number, institution)
    response = current_app.make_response(
        render_template("verdict.html", verdict=verdict, raw_number=number, institution_text=institution or "")
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/verify")
@limiter.limit(verify_limit)
def verify():
    return _verdict_page(request.args.get("number", ""), request.args.get("institution") or None)


@bp.get("/v/<uscc>/<path:number>")
@limiter.limit(verify_limit)
def deep_link(uscc: str, number: str):
    return _verdict_page(number, uscc)

"""Public pages: search form, verdict page, QR deep link."""
from __future__ import annotations

import logging
from urllib.parse import quote

from flask import Blueprint, current_app, render_template, request
from sqlalchemy.exc import SQLAlchemyError
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from registry.numbers.normalize import InvalidValue
from registry.verification.service import Unavailable

from . import receipt
from .api import log_query
from .edge import named_registrations
from .errors import error_response
from .extensions import limiter, registry
from .qr import public_verify_link
from .ratelimit import counts_on_verify_budget

bp = Blueprint("public", __name__)
log = logging.getLogger(__name__)
# what the verdict page (and the printed receipt) shows: portal/receipt.py decides it for both
bp.add_app_template_global(receipt.verdict_state, "verdict_state")

MAX_NEAR_NAMES = 5

INVALID_NUMBER = {
    "empty": _l("请输入报告编号。"),
    "too_long": _l("报告编号过长：最多 64 个字符。"),
    "bad_character": _l("报告编号含有不允许的字符：请按报告上印制的编号输入。"),
}


def _search_page(number: str, institution: str, error: str | None = None, status: int = 200):
    return render_template("index.html", number=number, institution=institution, error=error), status


@bp.get("/")
def index():
    return _search_page(request.args.get("number", "")[:200], request.args.get("institution", "")[:200])


def _verified(number: str, institution: str | None):
    """(the logged verdict, None), or (None, the page that says why there is none)."""
    if not number.strip():
        return None, _search_page("", institution or "", _("请输入报告编号。"), 400)
    try:
        verdict = registry().verifier.verify(number, institution)
    except InvalidValue as exc:
        message = INVALID_NUMBER.get(exc.code, INVALID_NUMBER["bad_character"])
        return None, _search_page(number, institution or "", str(message), 400)
    except Unavailable:
        return None, error_response(503)
    log_query(verdict, institution)
    return verdict, None


def _verdict_page(number: str, institution: str | None):
    verdict, refusal = _verified(number, institution)
    if refusal is not None:
        return refusal
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
@counts_on_verify_budget
def verify():
    return _verdict_page(request.args.get("number", ""), request.args.get("institution") or None)


@bp.get("/v/<uscc>/<path:number>")
@limiter.exempt
@counts_on_verify_budget
def deep_link(uscc: str, number: str):
    return _verdict_page(number, uscc)


@bp.get("/verify/receipt.pdf")
@limiter.exempt
@counts_on_verify_budget
def receipt_pdf():
    """The printable receipt of one check (portal/receipt.py): verified now, on the verify budget,
    logged like the page, with the transparency log's evidence for the registrations it names."""
    number, institution = request.args.get("number", ""), request.args.get("institution") or None
    try:
        font = receipt.font_from(current_app.config)
    except receipt.FontMissing:
        log.exception("no font for receipts")
        return error_response(503)
    verdict, refusal = _verified(number, institution)
    if refusal is not None:
        return refusal
    try:
        evidence = registry().tlog.evidence(named_registrations(verdict))
    except SQLAlchemyError:
        log.exception("the transparency log's evidence could not be read for a receipt")
        evidence = None
    if verdict.status in ("found", "withdrawn") and verdict.institution is not None and verdict.institution_resolved:
        link = public_verify_link(verdict.institution.uscc, verdict.number)  # the short deep link of QR codes
    else:
        link = f"{current_app.config['PUBLIC_BASE_URL'].rstrip('/')}/verify?number={quote(verdict.number, safe='')}"
        if institution:
            link += f"&institution={quote(institution, safe='')}"
    pdf = receipt.build_receipt(verdict=verdict, institution_text=institution, link=link, log=evidence, font=font)
    response = current_app.response_class(pdf, mimetype="application/pdf")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Disposition"] = "attachment; filename=\"receipt.pdf\"; filename*=UTF-8''" + \
        quote(f"查询凭证-{verdict.number}.pdf", safe="")
    return response

"""Public pages: search form, verdict page, QR deep link."""
from __future__ import annotations

import logging
from urllib.parse import quote

from flask import Blueprint, current_app, render_template, request
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.exc import SQLAlchemyError
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from registry.numbers.normalize import InvalidValue, normalize_document_sha256
from registry.verification.service import Unavailable

from . import receipt
from .api import log_query
from .edge import named_registrations
from .errors import api_error, error_response
from .extensions import limiter, registry
from .jsonio import json_response
from .log import log_limit
from .qr import public_verify_link
from .ratelimit import counts_on_verify_budget

bp = Blueprint("public", __name__)
log = logging.getLogger(__name__)
# what the verdict page (and the printed receipt) shows: portal/receipt.py decides it for both
bp.add_app_template_global(receipt.verdict_state, "verdict_state")

MAX_NEAR_NAMES = 5
LOG_TICKET_SALT = "verdict-log-evidence"
LOG_TICKET_SECONDS = 3600  # a verdict page left open for an hour asks to be reloaded

INVALID_NUMBER = {
    "empty": _l("请输入报告编号。"),
    "too_long": _l("报告编号过长：最多 64 个字符。"),
    "bad_character": _l("报告编号含有不允许的字符：请按报告上印制的编号输入。"),
    "bad_sha256": _l("文件摘要应为 64 位十六进制数字（文件的 SHA-256）。请在结果页重新选择报告文件。"),
}


def _search_page(number: str, institution: str, error: str | None = None, status: int = 200):
    return render_template("index.html", number=number, institution=institution, error=error), status


@bp.get("/")
def index():
    return _search_page(request.args.get("number", "")[:200], request.args.get("institution", "")[:200])


def _verified(number: str, institution: str | None, document: str | None = None):
    """(the logged verdict, None), or (None, the page that says why there is none). ``document``:
    a document fingerprint to compare (the page's "check the document"), as the browser sent it."""
    if not number.strip():
        return None, _search_page("", institution or "", _("请输入报告编号。"), 400)
    try:
        if document is not None:
            document = normalize_document_sha256(document)
        verdict = registry().verifier.verify(number, institution, document)
    except InvalidValue as exc:
        message = INVALID_NUMBER.get(exc.code, INVALID_NUMBER["bad_character"])
        return None, _search_page(number, institution or "", str(message), 400)
    except Unavailable:
        return None, error_response(503)
    log_query(verdict, institution)
    return verdict, None


def _verdict_page(number: str, institution: str | None, document: str | None = None):
    verdict, refusal = _verified(number, institution, document)
    if refusal is not None:
        return refusal
    named = named_registrations(verdict)
    response = current_app.make_response(render_template(
        "verdict.html", verdict=verdict, raw_number=number, institution_text=institution or "",
        near_names=_near_names(verdict, institution),
        log_ticket=_tickets().dumps([verdict.number, [[iid, uscc] for _n, iid, uscc in named]]) if named else None))
    response.headers["Cache-Control"] = "no-store"
    return response


def _tickets() -> URLSafeTimedSerializer:
    """Tickets of a verdict page to its log evidence: the registrations the page named, signed."""
    return URLSafeTimedSerializer(current_app.secret_key, salt=LOG_TICKET_SALT)


@bp.get("/verify/log")
@limiter.shared_limit(log_limit, scope="log")
def verify_log():
    """The transparency log's evidence (as ``proof=1`` answers it) for the registrations a verdict
    page named, for the page's own check in the browser (static/tlog_check.js). Only with the
    page's signed ticket: the page's verification already counted on the verify budget and was
    logged, so fetching its evidence is neither a second verification nor a way round one. A
    ticket older than LOG_TICKET_SECONDS, or not this site's, is 400; the page says so."""
    try:
        number, named = _tickets().loads(request.args.get("ticket", ""), max_age=LOG_TICKET_SECONDS)
        registrations = [(str(number), int(iid), str(uscc)) for iid, uscc in named]
    except (BadData, TypeError, ValueError):
        return api_error(400, "invalid_request", "the ticket is missing, expired or not this site's: reload the page")
    evidence = _evidence(registrations, "a verdict page")
    if evidence is None:
        return api_error(503, "unavailable", "the transparency log cannot be read now")
    response = json_response(evidence)
    response.headers["Cache-Control"] = "no-store"
    return response


def _evidence(named: list[tuple[str, int, str]], reader: str) -> dict | None:
    """The transparency log's evidence for the ``named`` registrations (the receipt prints it;
    the verdict page's script checks it); None when the log cannot be read."""
    try:
        return registry().tlog.evidence(named)
    except SQLAlchemyError:
        log.exception("the transparency log's evidence could not be read for %s", reader)
        return None


def _near_names(verdict, institution: str | None) -> list:
    """"Did you mean …" for an institution that was given but not matched (in-process, no SQL)."""
    if verdict.institution_resolved is not False:
        return []
    return registry().directory.near(institution, limit=MAX_NEAR_NAMES)


@bp.get("/verify")
@limiter.exempt
@counts_on_verify_budget
def verify():
    return _verdict_page(request.args.get("number", ""), request.args.get("institution") or None,
                         request.args.get("sha256"))


@bp.get("/v/<uscc>/<path:number>")
@limiter.exempt
@counts_on_verify_budget
def deep_link(uscc: str, number: str):
    return _verdict_page(number, uscc, request.args.get("sha256"))


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
    evidence = _evidence(named_registrations(verdict), "a receipt")
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

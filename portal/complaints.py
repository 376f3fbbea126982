"""Complaint intake for the public: the form, its submission, and the status page by tracking code."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from registry.complaints.service import (
    AttachmentRefused,
    ComplaintService,
    NewComplaint,
    format_tracking_code,
    normalize_tracking_code,
    store_attachment,
)
from registry.numbers.normalize import InvalidValue
from registry.verification.service import Unavailable

from .errors import error_response
from .extensions import limiter, registry
from .forms import CATEGORY_FOR_STATUS, CATEGORY_LABELS, ComplaintForm, TrackForm, field_attrs, form_text

log = logging.getLogger(__name__)

bp = Blueprint("complaints", __name__, url_prefix="/complaints")

# A complaint is a few fields and one 5 MB attachment; anything much larger is refused before it
# is read (413), whatever the app-wide upload limit for institutions' files.
MAX_BODY_BYTES = 6 * 1024 * 1024

ATTACHMENT_ERRORS = {
    "too_large": _l("附件不能超过 5 MB。"),
    "wrong_type": _l("附件须为 JPEG、PNG 图片或 PDF 文件。"),
    "empty": _l("附件是空文件。"),
}


def complaints() -> ComplaintService:
    return registry().complaints


def complaint_limit() -> str:
    return current_app.config["RATELIMIT_COMPLAINT"]


@bp.url_value_preprocessor
def _limit_body(_endpoint, _values) -> None:
    # url_value_preprocessors run before every before_request hook, so this limit is in place
    # before CSRFProtect reads the form.
    if request.method == "POST":
        request.max_content_length = MAX_BODY_BYTES


def _form_page(form: ComplaintForm, status: int = 200, problem: str | None = None):
    response = make_response(render_template("complaint_form.html", form=form, problem=problem, attrs=field_attrs), status)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/new")
def new():
    status = request.args.get("status", "")
    form = ComplaintForm(
        number=request.args.get("number", "")[:200],
        institution=request.args.get("institution", "")[:200],
        category=CATEGORY_FOR_STATUS.get(status),
    )
    return _form_page(form)


@bp.post("")
@limiter.limit(complaint_limit)
def submit():
    form = ComplaintForm()
    if form.website.data:
        log.info("complaint refused: honeypot filled")
        return error_response(400, _("提交未被接受。"))
    if not form.validate():
        return _form_page(form, 400, _("请更正下列问题后重新提交。"))
    try:
        verdict = registry().verifier.verify(form.number.data, form.institution.data or None)
    except InvalidValue:
        form.number.errors.append(_("报告编号格式无效：请按报告上印制的编号填写。"))
        return _form_page(form, 400, _("请更正下列问题后重新提交。"))
    except Unavailable:
        return error_response(503)
    attachment = None
    upload = form.attachment.data
    if upload is not None and upload.filename:
        try:
            attachment = store_attachment(upload.stream, Path(current_app.config["FILES_DIR"]))
        except AttachmentRefused as exc:
            form.attachment.errors.append(str(ATTACHMENT_ERRORS[exc.reason]))
            return _form_page(form, 400, _("请更正下列问题后重新提交。"))
    code = complaints().submit(
        NewComplaint(
            number=verdict.number,
            institution_text=form.institution.data or None,
            category=form.category.data,
            description=form.description.data,
            complainant_name=form.name.data or None,
            complainant_contact=form.contact.data or None,
            attachment=attachment,
        ),
        verdict=verdict,
    )
    flash(_("您的投诉已提交。请保存查询码，凭它查看处理进度。"), "success")
    return redirect(url_for(".status", tracking_code=format_tracking_code(code)), code=303)


def track_limit() -> str:
    """Only misses count (see ``track``): a person who mistypes a few times is not stopped,
    guessing codes is (they have 80 random bits anyway)."""
    return current_app.config["RATELIMIT_TRACK"]


def _track_page(form: TrackForm, status: int = 200):
    response = make_response(render_template("complaint_track.html", form=form, attrs=field_attrs), status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.route("/track", methods=["GET", "POST"])
@limiter.limit(track_limit, methods=["POST"], deduct_when=lambda response: response.status_code != 303)
def track():
    """查询投诉进度: the tracking code in, the status page out; a wrong code answers on this page."""
    form = TrackForm()
    if request.method == "GET":
        return _track_page(form)
    if not form.validate():
        return _track_page(form, 400)
    code = normalize_tracking_code(form.code.data)
    if code is None:
        form.code.errors.append(_("查询码为 16 位字母和数字，形如 ABCD-EFGH-JKLM-NPQR，请按提交投诉后得到的查询码输入。"))
        return _track_page(form, 400)
    if complaints().public_view(code) is None:
        form.code.errors.append(_("没有这个查询码对应的投诉，请核对后重试。"))
        return _track_page(form, 404)
    return redirect(url_for(".status", tracking_code=format_tracking_code(code)), code=303)


@bp.get("/<tracking_code>")
def status(tracking_code: str):
    complaint = complaints().public_view(tracking_code)
    if complaint is None:
        return error_response(404, _("没有这个查询码对应的投诉，请核对后重试。"))
    casework = registry().casework  # the regulator's questions and findings
    response = make_response(render_template(
        "complaint_status.html", complaint=complaint, categories=CATEGORY_LABELS,
        question=casework.open_question(tracking_code),
        # a finding is shown only while the complaint matches its seals (docs/contract.md, "HTML pages")
        finding=casework.public_finding(tracking_code) if complaint.intact else None))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.post("/<tracking_code>/answer")
@limiter.limit(complaint_limit)
def answer(tracking_code: str):
    """The complainant answers the handling authority's question (it goes into the trail)."""
    from registry.complaints.casework import InvalidAction

    text = form_text("answer", multiline=True)
    try:
        registry().casework.answer(tracking_code, text)
    except LookupError:
        return error_response(404, _("没有这个查询码对应的投诉，请核对后重试。"))
    except InvalidAction as exc:
        flash(_("请填写补充说明。") if exc.code == "reason_required" else _("目前没有需要您回答的问题。"), "error")
    else:
        flash(_("您的补充说明已提交。"), "success")
    return redirect(url_for(".status", tracking_code=tracking_code), code=303)

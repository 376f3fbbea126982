"""Complaint intake for the public: the form, its submission, and the status page by tracking code."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from itsdangerous import BadData, URLSafeTimedSerializer

from registry.complaints.attachments import KEEP_SECONDS, claim_kept, drop_kept, keep_attachment, kept_size

from registry.complaints.service import (
    MAX_ATTACHMENT_BYTES,
    AttachmentRefused,
    ComplaintService,
    NewComplaint,
    format_tracking_code,
    normalize_tracking_code,
    store_attachment,
)
from registry.numbers.normalize import InvalidValue, normalize_document_sha256
from registry.verification.service import Unavailable

from .errors import error_response
from .i18n import current_language
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
# what a refused file most likely is, by its name (the content decided the refusal)
KNOWN_KINDS = {
    ".doc": _l("Word 文档"), ".docx": _l("Word 文档"), ".wps": _l("WPS 文档"),
    ".xls": _l("Excel 表格"), ".xlsx": _l("Excel 表格"), ".heic": _l("HEIC 照片（苹果手机的默认格式）"),
    ".heif": _l("HEIC 照片（苹果手机的默认格式）"), ".zip": _l("压缩包"), ".rar": _l("压缩包"), ".gif": _l("GIF 图片"),
    ".webp": _l("WebP 图片"), ".txt": _l("文本文件"), ".ofd": _l("OFD 文件"),
}
KEPT_SALT = "complaint-kept-attachment"


def display_name(filename: str | None) -> str:
    """The name of the complainant's file as they know it (no folders, bounded)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return "".join(ch for ch in name if ch.isprintable())[:80] or _("附件")


def _sep() -> str:
    """Between sentences: none after a Chinese full stop, a space in English."""
    return " " if current_language() == "en" else ""


def attachment_message(reason: str, filename: str | None) -> str:
    """Names the file and what to do: the browser cannot keep a refused file in the form."""
    name = display_name(filename)
    sep = _sep()
    if reason == "wrong_type":
        suffix = Path(name).suffix.lower()
        kind = KNOWN_KINDS.get(suffix)
        what = (_("“%(name)s”是%(kind)s（%(suffix)s），不能作为附件。", name=name, kind=kind, suffix=suffix) if kind
                else _("“%(name)s”不能作为附件。", name=name))
        return sep.join([what, str(ATTACHMENT_ERRORS["wrong_type"]), _("可以另存为 PDF 或截图后重新选择。")])
    if reason == "too_large":
        return sep.join([_("“%(name)s”太大。", name=name), str(ATTACHMENT_ERRORS["too_large"]),
                         _("请压缩或换一个较小的文件后重新选择。")])
    return sep.join([_("“%(name)s”不能作为附件。", name=name), str(ATTACHMENT_ERRORS["empty"]), _("请重新选择。")])


def attachment_script_attrs() -> dict:
    """The data-* attributes portal/static/attachment.js reads: the limit and its messages, in
    the page's language (it checks a chosen file before anything is sent)."""
    return {
        "data-max-bytes": str(MAX_ATTACHMENT_BYTES),
        "data-kinds": json.dumps({k.lstrip("."): str(v) for k, v in KNOWN_KINDS.items()}, ensure_ascii=False),
        "data-msg-kind": _("“{name}”是{kind}（{suffix}），不能作为附件。"),
        "data-msg-unknown": _("“{name}”不能作为附件。"),
        "data-msg-sep": _sep(),
        "data-msg-rule": str(ATTACHMENT_ERRORS["wrong_type"]) + _sep() + _("可以另存为 PDF 或截图后重新选择。"),
        "data-msg-size": _("“{name}”有 {size}。") + _sep() + str(ATTACHMENT_ERRORS["too_large"]),
        "data-msg-size-pdf": _("请压缩或换一个较小的文件后重新选择。"),
        "data-msg-offer": _("这张照片有 {size}，可以先压缩再发送（更快，也更省流量）。"),
        "data-msg-must": _("可以把照片压缩到 5 MB 以内再发送。"),
        "data-msg-compress": _("压缩照片"),
        "data-msg-compressing": _("正在压缩…"),
        "data-msg-compressed": _("已压缩：“{name}”现在是 {size}，将随表单发送。"),
        "data-msg-failed": _("无法在本机压缩这张照片，请换一张较小的照片。"),
        "data-msg-ok": _("已选择“{name}”（{size}）。"),
    }


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=KEPT_SALT)


def _files_dir() -> Path:
    return Path(current_app.config["FILES_DIR"])


def _kept_from_form() -> dict | None:
    """The attachment kept from the previous, refused submission (signed, at most an hour old)."""
    token = request.form.get("kept_attachment", "")
    if not token or len(token) > 500:
        return None
    try:
        kept = _serializer().loads(token, max_age=KEEP_SECONDS)
    except BadData:
        return None
    if not isinstance(kept, dict) or not isinstance(kept.get("file"), str) or not isinstance(kept.get("name"), str):
        return None
    return kept


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


def _form_page(form: ComplaintForm, status: int = 200, problem: str | None = None, kept: dict | None = None):
    kept_view = None
    if kept is not None:
        size = kept_size(_files_dir(), kept["file"])
        if size is not None:
            kept_view = {"name": kept["name"], "size_kb": max(1, round(size / 1024)),
                         "token": _serializer().dumps(kept)}
    response = make_response(render_template(
        "complaint_form.html", form=form, problem=problem, attrs=field_attrs, kept=kept_view,
        attachment_attrs={**attachment_script_attrs(), **field_attrs(form.attachment, "attachment-hint")}), status)
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
    if request.args.get("document") == "mismatch":
        # from the verdict page's document check: the file in hand is not the one registered
        form.category.data = "altered"
        form.description.data = _document_mismatch_note(request.args.get("sha256", ""))
    return _form_page(form)


def _document_mismatch_note(sha256: str) -> str:
    """The complaint's prefilled description after a document check that did not match."""
    note = _("在结果页核对报告文件时，我所持报告文件的 SHA-256 摘要与出具机构为该报告编号登记的文件摘要不一致：文件可能被修改过，或不是机构出具的那份报告。")
    try:
        digest = normalize_document_sha256(sha256)
    except InvalidValue:
        return note
    return note + "\n" + _("所持文件的 SHA-256：%(sha256)s", sha256=digest)


@bp.post("")
@limiter.limit(complaint_limit)
def submit():
    form = ComplaintForm()
    if form.website.data:
        log.info("complaint refused: honeypot filled")
        return error_response(400, _("提交未被接受。"))
    valid = form.validate()
    verdict = None
    if valid:
        try:
            verdict = registry().verifier.verify(form.number.data, form.institution.data or None)
        except InvalidValue:
            form.number.errors.append(_("报告编号格式无效：请按报告上印制的编号填写。"))
            valid = False
        except Unavailable:
            return error_response(503)
    # The attachment is checked whatever else is wrong, so every problem is named at once; a good
    # one is kept (a browser cannot put a file back into the form) until the next submission.
    files_dir = _files_dir()
    kept = _kept_from_form()
    if kept is not None and request.form.get("drop_attachment") == "1":
        drop_kept(files_dir, kept["file"])
        kept = None
    upload = form.attachment.data
    if upload is not None and upload.filename:
        if kept is not None:  # a new choice replaces the kept file
            drop_kept(files_dir, kept["file"])
            kept = None
        try:
            stored = keep_attachment(upload.stream, files_dir)
        except AttachmentRefused as exc:
            form.attachment.errors.append(attachment_message(exc.reason, upload.filename))
            valid = False
        else:
            kept = {"file": Path(stored.path).name, "name": display_name(upload.filename)}
    if not valid:
        return _form_page(form, 400, _("请更正下列问题后重新提交。"), kept=kept)
    attachment = None
    if kept is not None:
        attachment = claim_kept(files_dir, kept["file"])
        if attachment is None:
            form.attachment.errors.append(_("保留的附件“%(name)s”已过期，请重新选择。", name=kept["name"]))
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
    registry().notices.complaint_received(code)  # the receipt with the code, if an e-mail address was given
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


def _status_page(complaint, *, answer_text: str = "", answer_errors: list[str] | None = None, status: int = 200):
    casework = registry().casework  # the regulator's questions and findings, the running deadline
    code = complaint.tracking_code
    response = make_response(render_template(
        "complaint_status.html", complaint=complaint, categories=CATEGORY_LABELS,
        question=casework.open_question(code),
        # a finding is shown only while the complaint matches its seals (docs/contract.md, "HTML pages")
        finding=casework.public_finding(code) if complaint.intact else None,
        deadline=casework.public_deadline(code), answer_text=answer_text, answer_errors=answer_errors or [],
        attachment_js=attachment_script_attrs()), status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.get("/<tracking_code>")
def status(tracking_code: str):
    complaint = complaints().public_view(tracking_code)
    if complaint is None:
        return error_response(404, _("没有这个查询码对应的投诉，请核对后重试。"))
    return _status_page(complaint)


@bp.post("/<tracking_code>/answer")
@limiter.limit(complaint_limit)
def answer(tracking_code: str):
    """The complainant answers the handling authority's question (it goes into the trail), with
    one attachment if they like (checked as the complaint's own; kept internal like the text)."""
    from registry.complaints.casework import InvalidAction

    complaint = complaints().public_view(tracking_code)
    if complaint is None:
        return error_response(404, _("没有这个查询码对应的投诉，请核对后重试。"))
    text = form_text("answer", multiline=True)
    upload = request.files.get("attachment")
    attachment = None
    if text.strip() and upload is not None and upload.filename:
        try:
            attachment = store_attachment(upload.stream, _files_dir())
        except AttachmentRefused as exc:
            return _status_page(complaint, answer_text=text, status=400,
                                answer_errors=[attachment_message(exc.reason, upload.filename)])
    try:
        registry().casework.answer(tracking_code, text, attachment)
    except (LookupError, InvalidAction) as exc:
        if attachment is not None:
            (_files_dir() / attachment.path).unlink(missing_ok=True)
        if isinstance(exc, LookupError):
            return error_response(404, _("没有这个查询码对应的投诉，请核对后重试。"))
        flash(_("请填写补充说明。") if exc.code == "reason_required" else _("目前没有需要您回答的问题。"), "error")
    else:
        flash(_("您的补充说明和附件已提交。") if attachment else _("您的补充说明已提交。"), "success")
    return redirect(url_for(".status", tracking_code=tracking_code), code=303)

"""The institution portal (/institution/): quarter overview, upload → check → confirm → receipt,
"no reports this quarter", withdrawals, API tokens and QR codes — for the signed-in
institution's own data only (every lookup is filtered by ``g.account.institution_id``)."""
from __future__ import annotations

import datetime as dt
import logging

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from sqlalchemy import select
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from importers.errors import FileRefused
from importers.numbers import Rejected, parse_number_cell
from registry.accounts.accounts import AccountError
from registry.accounts.tokens import TokenService
from registry.institutions.models import Institution
from registry.registration.models import Batch
from registry.numbers.normalize import InvalidValue, clean_text, normalize_number
from registry.numbers.quarters import SHANGHAI, Quarter
from registry.registration.service import RegistrationRefused, receipt_of
from registry.registration.uploads import WORKING
from workflows.jobs import QueueUnavailable, ThreadQueue
from workflows.withdrawals import read_withdrawal_file, restore_items, withdraw_items

from . import qr
from .auth import guard_blueprint
from .forms import _Choice
from .exports import csv_file_response
from .extensions import db_session, registry
from .i18n import current_language, quarter_label

log = logging.getLogger(__name__)

bp = guard_blueprint(Blueprint("institution", __name__, url_prefix="/institution"), "institution")

DEFAULT_BACKGROUND_NUMBERS = 100_000
MAX_QR_SHEET = 200


# --- helpers ---------------------------------------------------------------------------------
def _institution() -> Institution:
    inst = db_session().get(Institution, g.account.institution_id)
    if inst is None:
        abort(403)
    return inst


def _today() -> dt.date:
    return registry().clock().astimezone(SHANGHAI).date()


def _quarter_choices() -> list[Quarter]:
    return [Quarter.parse(s.quarter) for s in registry().registration.quarter_overview(
        institution_id=g.account.institution_id)]


def default_quarter(today: dt.date) -> Quarter:
    """The quarter a lab manager most likely uploads now: the previous one while its upload
    window is open (the first month of a quarter), else the current one."""
    previous = Quarter.containing(today).previous()
    return previous if today <= previous.deadline else Quarter.containing(today)


def _message(exc) -> str:
    return exc.message_en if current_language() == "en" else exc.message_zh


def _uploads():
    return registry().uploads


def job_queue():
    """The app's job queue: RQ when Redis is configured, else a thread (workflows/jobs.py)."""
    return registry().jobs


def _background_numbers() -> int:
    """Uploads holding more numbers (ranges expanded) are checked and imported by a job."""
    return int(current_app.config.get("UPLOAD_BACKGROUND_NUMBERS", DEFAULT_BACKGROUND_NUMBERS))


def _enqueue_check(upload_id: int) -> None:
    """Queue the check of a big upload; without a reachable queue, check it on a thread here
    (reading a file needs neither Redis nor a worker)."""
    try:
        job_queue().enqueue("check", upload_id, confirmed_at=registry().clock())
    except QueueUnavailable:
        ThreadQueue(registry()).enqueue("check", upload_id, confirmed_at=registry().clock())


def _own_upload(upload_id: int):
    upload = _uploads().get(upload_id)
    if upload is None or upload.institution_id != g.account.institution_id:
        abort(404)
    return upload


def _own_batch(batch_id: int) -> Batch:
    batch = db_session().get(Batch, batch_id)
    if batch is None or batch.institution_id != g.account.institution_id:
        abort(404)
    return batch


class UploadForm(FlaskForm):
    quarter = SelectField(_l("季度"), validators=[DataRequired()])
    file = FileField(_l("报告编号文件（CSV、TXT 或 XLSX）"))


class QuarterForm(FlaskForm):
    quarter = SelectField(_l("季度"), validators=[DataRequired()])


class WithdrawForm(FlaskForm):
    number = StringField(_l("报告编号（或范围，如 WT2020-0098~0102）"), validators=[Optional(), Length(max=200)])
    reason = StringField(_l("撤销原因"), validators=[Optional(), Length(max=500)])
    file = FileField(_l("或上传撤销文件（列：报告编号、撤销原因）"))


class RestoreForm(FlaskForm):
    number = StringField(_l("报告编号（或范围，如 WT2020-0098~0102）"), validators=[Optional(), Length(max=200)])
    reason = StringField(_l("恢复原因（可选）"), validators=[Optional(), Length(max=500)])
    file = FileField(_l("或上传恢复文件（列：报告编号，可选撤销原因列写恢复原因）"))


class TokenForm(FlaskForm):
    name = StringField(_l("令牌名称（如“LIMS 系统”）"), validators=[DataRequired(_l("请为令牌命名。")), Length(max=100)])


class QrForm(FlaskForm):
    class Meta:
        csrf = False  # a GET form that changes nothing

    number = StringField(_l("报告编号"), validators=[Optional(), Length(max=200)])
    numbers = TextAreaField(_l("多个报告编号（每行一个，用于打印）"), validators=[Optional(), Length(max=20000)])


def _with_quarters(form, quarters: list[Quarter]):
    form.quarter.choices = [_Choice(str(q), quarter_label(str(q))) for q in quarters]
    if not form.quarter.data or form.quarter.data == "None":
        wanted = default_quarter(_today())
        form.quarter.data = str(wanted if wanted in quarters else (quarters[0] if quarters else wanted))
    return form


# --- overview --------------------------------------------------------------------------------
@bp.get("/")
def overview():
    inst = _institution()
    quarters = registry().registration.quarter_overview(institution_id=inst.id)
    batches = db_session().scalars(
        select(Batch).where(Batch.institution_id == inst.id).order_by(Batch.id.desc()).limit(200)).all()
    zero_form = _with_quarters(QuarterForm(), [Quarter.parse(q.quarter) for q in quarters])
    return render_template("institution/overview.html", institution=inst, quarters=quarters, batches=batches,
                           zero_form=zero_form)


# --- upload → check → confirm → receipt ------------------------------------------------------
@bp.route("/upload", methods=["GET", "POST"])
def upload():
    inst = _institution()
    form = _with_quarters(UploadForm(), _quarter_choices())
    error = None
    if form.validate_on_submit():
        quarter = Quarter.parse(form.quarter.data)
        storage = form.file.data
        if not storage or not getattr(storage, "filename", ""):
            error = _("请选择要上传的文件。")
        else:
            try:
                registry().registration.check_quarter(quarter)
            except RegistrationRefused as exc:
                error = _message(exc)
        if error is None:
            uploads = _uploads()
            try:
                stored = uploads.store(storage.stream, file_name=storage.filename, institution_id=inst.id,
                                       quarter=quarter, uploaded_by=g.account.username)
            except OSError as exc:  # a full disk: nothing stored, nothing registered
                log.warning("upload of %r not stored: %s", storage.filename, exc.strerror or exc)
                error = _("服务器存储空间暂时不足，文件未保存，也未登记任何编号。请稍后重新上传。")
                return render_template("institution/upload.html", institution=inst, form=form, error=error,
                                       background_numbers=_background_numbers()), 503
            if registry().upload_steps.check(stored.id, stop_after=_background_numbers()) is None:
                _enqueue_check(stored.id)  # more numbers than a request should read: a job checks it
            return redirect(url_for(".upload_status", upload_id=stored.id), 303)
    status = 400 if (error or form.errors) else 200
    return render_template("institution/upload.html", institution=inst, form=form, error=error,
                           background_numbers=_background_numbers()), status


@bp.get("/uploads/<int:upload_id>")
def upload_status(upload_id: int):
    upload = _own_upload(upload_id)
    if upload.state == "done" and upload.batch_id:
        return redirect(url_for(".receipt", batch_id=upload.batch_id))
    uploads = _uploads()
    stuck = uploads.is_stuck(upload)
    progress = uploads.progress(upload)
    total = int((upload.report or {}).get("numbers") or 0)  # a registration's total, known from the check
    percent = min(100, progress * 100 // total) if total else 0
    return render_template("institution/upload_status.html", institution=_institution(), upload=upload,
                           form=FlaskForm(), progress=progress, total=total, percent=percent, stuck=stuck,
                           working=upload.state in WORKING and not stuck,
                           stuck_minutes=int(uploads.stuck_after.total_seconds() // 60))


@bp.post("/uploads/<int:upload_id>/confirm")
def confirm_upload(upload_id: int):
    upload = _own_upload(upload_id)
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    status_page = redirect(url_for(".upload_status", upload_id=upload.id), 303)
    if upload.state != "ready":
        return status_page  # confirmed already (another click, another tab): the page shows where it is
    uploads = _uploads()
    repeat = (upload.report or {}).get("repeat_batch_id")
    if repeat:
        uploads.transition(upload.id, "ready", "done", batch_id=repeat)
        flash(_("此文件此前已登记，未重复登记。"), "ok")
        return redirect(url_for(".receipt", batch_id=repeat), 303)
    if (upload.report or {}).get("numbers", 0) > _background_numbers():
        if not uploads.transition(upload.id, "ready", "queued", progress=0):
            return status_page
        try:
            job_queue().enqueue("import", upload.id, confirmed_at=registry().clock())
        except QueueUnavailable:
            uploads.transition(upload.id, "queued", "ready")
            flash(_("后台登记队列暂时不可用，文件尚未登记。请稍后再点击“确认登记”。"), "error")
        return status_page
    if not uploads.transition(upload.id, "ready", "importing", progress=0):
        return status_page  # another request is registering it
    try:
        receipt = registry().upload_steps.import_(upload.id, claimed=True)
    except RegistrationRefused:
        return status_page
    except Exception:  # noqa: BLE001 - kept on the upload (failed, may be retried); the log has the trace
        return status_page
    registry().refresh(auto_rebuild=False)
    return redirect(url_for(".receipt", batch_id=receipt.batch_id), 303)


@bp.post("/uploads/<int:upload_id>/retry")
def retry_upload(upload_id: int):
    """Start a stuck or failed upload again (its check, or its registration)."""
    upload = _own_upload(upload_id)
    if not FlaskForm().validate_on_submit():
        abort(400)
    status_page = redirect(url_for(".upload_status", upload_id=upload.id), 303)
    kind = registry().upload_steps.retry(upload.id)
    if kind == "check":
        _enqueue_check(upload.id)
    elif kind == "import":
        try:
            job_queue().enqueue("import", upload.id, confirmed_at=registry().clock())
        except QueueUnavailable:
            _uploads().transition(upload.id, "queued", "failed", error="后台登记队列暂时不可用 / the job queue is unavailable")
            flash(_("后台登记队列暂时不可用，文件尚未登记。请稍后重试。"), "error")
    return status_page


@bp.post("/uploads/<int:upload_id>/cancel")
def cancel_upload(upload_id: int):
    upload = _own_upload(upload_id)
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    if registry().upload_steps.cancel(upload.id):
        flash(_("已取消，未登记任何编号。"), "ok")
        return redirect(url_for(".overview"), 303)
    return redirect(url_for(".upload_status", upload_id=upload.id), 303)


@bp.get("/batches/<int:batch_id>")
def receipt(batch_id: int):
    batch = _own_batch(batch_id)
    inst = _institution()
    upload = _uploads().for_batch(batch.id)
    return render_template("institution/receipt.html", institution=inst, receipt=receipt_of(batch, inst),
                           upload=upload, has_rejected=bool(upload and batch.rejected))


@bp.get("/batches/<int:batch_id>/rejected.csv")
def rejected_csv(batch_id: int):
    batch = _own_batch(batch_id)
    upload = _uploads().for_batch(batch.id)
    if upload is None:
        abort(404)
    path = _uploads().rejected_path(upload)
    if not path.exists():
        abort(404)
    return csv_file_response(f"batch-{batch.id}-rejected.csv", path)  # neutralised, old files too


@bp.post("/declare-zero")
def declare_zero():
    form = _with_quarters(QuarterForm(), _quarter_choices())
    if not form.validate_on_submit():
        abort(400)
    try:
        receipt = registry().registration.declare_zero(
            institution_id=g.account.institution_id, quarter=Quarter.parse(form.quarter.data),
            created_by=g.account.username)
    except RegistrationRefused as exc:
        flash(_message(exc), "error")
        return redirect(url_for(".overview"), 303)
    flash(_("已声明本季度无报告。"), "ok")
    return redirect(url_for(".receipt", batch_id=receipt.batch_id), 303)


# --- withdrawals and restores: check → confirm -----------------------------------------------
MAX_TYPED_NUMBERS = 1_000  # a range typed in the form; more go in a file
SHOWN_NUMBERS = 500


def _pending():
    return registry().pending_changes


def _change_items(form, *, restore: bool) -> tuple[list, list, bool]:
    """(items, rejected rows, ok) from the form; a problem goes onto its field."""
    storage = form.file.data
    if storage and getattr(storage, "filename", ""):
        try:
            items, problems = read_withdrawal_file(storage.stream, storage.filename, restore=restore,
                                                   max_bytes=current_app.config["MAX_UPLOAD_BYTES"],
                                                   sandbox=registry().sandbox)
        except FileRefused as exc:
            form.file.errors.append(_message(exc))
            return [], [], False
        return items, problems, True
    if not (form.number.data or "").strip():
        form.number.errors.append(_("请填写报告编号或选择撤销文件。") if not restore
                                  else _("请填写报告编号或选择恢复文件。"))
        return [], [], False
    reason = " ".join(clean_text(form.reason.data or "").split())
    if not reason and not restore:
        form.reason.errors.append(_("请填写撤销原因。"))
        return [], [], False
    try:
        span = parse_number_cell(form.number.data)
    except Rejected as exc:
        form.number.errors.append(_message(exc))
        return [], [], False
    if span.count > MAX_TYPED_NUMBERS:
        form.number.errors.append(_(
            "这个范围包含 %(n)s 个编号，在此一次最多处理 %(max)s 个。请检查范围是否写错；确需处理更多编号，请上传文件。",
            n="{:,}".format(span.count), max="{:,}".format(MAX_TYPED_NUMBERS)))
        return [], [], False
    return [(None, n, reason) for n in span], [], True


def _change_page(kind: str):
    """GET: the form. POST: check what the withdrawal (restore) would change and show it, with
    a button to confirm; nothing changes yet."""
    restore = kind == "restore"
    inst = _institution()
    form = WithdrawForm() if not restore else RestoreForm()
    template = "institution/restorations.html" if restore else "institution/withdrawals.html"
    if not form.validate_on_submit():
        status = 400 if form.errors else 200
        return render_template(template, institution=inst, form=form), status
    items, problems, ok = _change_items(form, restore=restore)
    if not ok:
        return render_template(template, institution=inst, form=form), 400
    preview = registry().registration.preview_change(institution_id=inst.id, items=items, restore=restore)
    key = _pending().save(kind=kind, institution_id=inst.id, items=items, problems=problems) if preview.change else None
    return render_template("institution/change_check.html", institution=inst, kind=kind, preview=preview,
                           shown=preview.change[:SHOWN_NUMBERS], problems=problems[:100],
                           problem_count=len(problems), key=key, confirm_form=FlaskForm())


def _confirm_change(kind: str):
    restore = kind == "restore"
    inst = _institution()
    if not FlaskForm().validate_on_submit():
        abort(400)
    change = _pending().take(request.form.get("key", ""), kind=kind, institution_id=inst.id)
    page = ".restorations" if restore else ".withdrawals"
    if change is None:
        flash(_("此项操作已确认过或已过期，未作任何更改；请重新填写。"), "error")
        return redirect(url_for(page), 303)
    run = restore_items if restore else withdraw_items
    done = run(registry().registration, institution_id=inst.id, items=change.items, problems=change.problems,
               actor=g.account.username, source="portal")
    template = "institution/restorations.html" if restore else "institution/withdrawals.html"
    form = (RestoreForm if restore else WithdrawForm)(formdata=None)
    return render_template(template, institution=inst, form=form, result=done.result,
                           problems=done.problems[:100], problem_count=len(done.problems))


@bp.route("/withdrawals", methods=["GET", "POST"])
def withdrawals():
    return _change_page("withdraw")


@bp.post("/withdrawals/confirm")
def confirm_withdrawals():
    return _confirm_change("withdraw")


@bp.route("/restorations", methods=["GET", "POST"])
def restorations():
    return _change_page("restore")


@bp.post("/restorations/confirm")
def confirm_restorations():
    return _confirm_change("restore")


# --- API tokens ------------------------------------------------------------------------------
def _tokens() -> TokenService:
    return registry().tokens


@bp.route("/tokens", methods=["GET", "POST"])
def tokens():
    inst = _institution()
    form = TokenForm()
    created, error = None, None
    if form.validate_on_submit():
        try:
            token, plaintext = _tokens().create(institution_id=inst.id, name=form.name.data,
                                                created_by=g.account.username, account_id=g.account.id)
            created = {"name": token.name, "token": plaintext}
            form = TokenForm(formdata=None)
        except AccountError as exc:
            error = _message(exc)
    response = current_app.make_response(render_template(
        "institution/tokens.html", institution=inst, form=form, tokens=_tokens().list(inst.id), created=created,
        now_utc=registry().clock(),
        error=error, revoke_form=FlaskForm()))
    response.headers["Cache-Control"] = "no-store"  # the new token is on this page once
    return response


@bp.post("/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int):
    if not FlaskForm().validate_on_submit():
        abort(400)
    if not _tokens().revoke(institution_id=g.account.institution_id, token_id=token_id):
        abort(404)
    flash(_("令牌已吊销。"), "ok")
    return redirect(url_for(".tokens"), 303)


# --- the transparency log: this institution's entries, new ones as alerts ----------------------
LOG_PAGE = 200


@bp.get("/log")
def log_entries():
    """Every log entry under this institution's USCC, newest first; entries after the last
    review are alerts (a change it did not make — a stolen token, a rogue account — shows here)."""
    inst = _institution()
    entries, _more, size = registry().tlog.mine(inst.id, limit=LOG_PAGE, newest_first=True)
    seen = registry().tlog.seen(inst.id)
    response = current_app.make_response(render_template(
        "institution/log.html", institution=inst, entries=entries, seen=seen, size=size,
        alerts=sum(1 for e in entries if e.leaf_index >= seen), form=FlaskForm()))
    response.headers["Cache-Control"] = "no-store"  # numbers and salts
    return response


@bp.post("/log/seen")
def log_seen():
    """Mark every entry up to the tree size shown as reviewed."""
    form = FlaskForm()
    upto = request.form.get("upto", "")
    if not form.validate_on_submit() or not upto.isdigit() or len(upto) > 18:
        abort(400)
    registry().tlog.mark_seen(g.account.institution_id, int(upto))
    flash(_("已标记为已核对。"), "ok")
    return redirect(url_for(".log_entries"), 303)


# --- QR codes --------------------------------------------------------------------------------
def _normalised(raw: str) -> str:
    try:
        return normalize_number(raw)
    except InvalidValue:
        abort(400)


def _link(number: str) -> str:
    return qr.public_verify_link(_institution().uscc, number)


@bp.get("/qr")
def qr_page():
    inst = _institution()
    form = QrForm(request.args)
    number, error = None, None
    if (form.number.data or "").strip():
        try:
            number = normalize_number(form.number.data)
        except InvalidValue:
            error = _("报告编号含有不允许的字符或过长。")
    link = qr.public_verify_link(inst.uscc, number) if number else None
    state = None  # what a scan would answer now: warn before a code is printed for it
    if number:
        withdrawn = registry().registration.withdrawn_of(inst.id, [number])
        state = "not_registered" if number not in withdrawn else "withdrawn" if withdrawn[number] else None
    return render_template("institution/qr.html", institution=inst, form=form, number=number, link=link,
                           error=error, svg=qr.svg_inline(link, scale=4) if link else None, state=state)


@bp.get("/qr.svg")
def qr_svg():
    number = _normalised(request.args.get("number", ""))
    response = current_app.response_class(qr.svg_bytes(_link(number), scale=8), mimetype="image/svg+xml")
    response.headers["Content-Disposition"] = f'attachment; filename="qr-{_file_safe(number)}.svg"'
    return response


@bp.get("/qr.png")
def qr_png():
    number = _normalised(request.args.get("number", ""))
    response = current_app.response_class(qr.png_bytes(_link(number)), mimetype="image/png")
    response.headers["Content-Disposition"] = f'attachment; filename="qr-{_file_safe(number)}.png"'
    return response


@bp.get("/qr/sheet")
def qr_sheet():
    """A printable page of QR labels, one per number."""
    inst = _institution()
    numbers, bad = [], []
    for line in request.args.get("numbers", "").splitlines()[:MAX_QR_SHEET]:
        if line.strip():
            try:
                numbers.append(normalize_number(line))
            except InvalidValue:
                bad.append(line.strip())
    withdrawn = registry().registration.withdrawn_of(inst.id, numbers)
    labels = [{"number": n, "svg": qr.svg_inline(qr.public_verify_link(inst.uscc, n), scale=3),
               "state": "not_registered" if n not in withdrawn else "withdrawn" if withdrawn[n] else None}
              for n in numbers]
    # numbers a scan would answer "not registered" or "withdrawn" for: named before printing
    not_registered = [n for n in numbers if n not in withdrawn]
    withdrawn_numbers = [n for n in numbers if withdrawn.get(n)]
    fine = [n for n in numbers if withdrawn.get(n) is False]
    only_fine = url_for(".qr_sheet", numbers="\n".join(fine)) if fine and len(fine) < len(numbers) else None
    return render_template("institution/qr_sheet.html", institution=inst, labels=labels, bad=bad,
                           not_registered=not_registered, withdrawn=withdrawn_numbers, only_fine=only_fine)


def _file_safe(number: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in number)[:64]

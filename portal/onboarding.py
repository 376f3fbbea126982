"""Onboarding institutions (issue 18): the public request page (``/onboarding``, on the auth
blueprint: anyone may ask) and, in the regulator console, the reviewing authority's queue of
requests (approve or refuse, with a reason) and bulk creation from a certificate list."""
from __future__ import annotations

import csv
import io

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import StringField, TextAreaField
from wtforms.validators import DataRequired, Length

from registry.accounts.accounts import RESET_LIFETIME, VERIFY_LIFETIME, AccountError

from .auth import bp as auth_bp
from .auth import reset_link
from .extensions import limiter, registry
from .i18n import current_language
from .regulator import bp as regulator_bp
from .regulator import officer

REQUEST_LIMIT = "5/hour;20/day"  # per client address: each request sends an e-mail
MAX_BULK_ROWS = 5000


class RequestForm(FlaskForm):
    uscc = StringField(_l("统一社会信用代码"), validators=[DataRequired(_l("请填写统一社会信用代码。")), Length(max=30)])
    certificate = StringField(_l("资质认定证书编号"), validators=[DataRequired(_l("请填写资质认定证书编号。")), Length(max=30)])
    username = StringField(_l("用户名"), validators=[DataRequired(_l("请填写用户名。")), Length(max=64)])
    email = StringField(_l("电子邮件地址"), validators=[DataRequired(_l("请填写电子邮件地址。")), Length(max=254)])


def _message(exc: AccountError) -> str:
    return exc.message_en if current_language() == "en" else exc.message_zh


@auth_bp.route("/onboarding", methods=["GET", "POST"])
@limiter.limit(REQUEST_LIMIT, methods=["POST"])
def request_account():
    """An institution asks for a portal account; the link e-mailed to the address sends the
    request to its reviewing authority."""
    form = RequestForm()
    error = None
    if form.validate_on_submit():
        try:
            row, token = registry().onboarding.request(uscc=form.uscc.data, certificate=form.certificate.data,
                                                       username=form.username.data, email=form.email.data)
        except AccountError as exc:
            error = _message(exc)
        else:
            registry().notifier.send("onboard_verify", row.email, secret=True, username=row.username,
                                     institution=row.institution.name,
                                     hours=int(VERIFY_LIFETIME.total_seconds() // 3600),
                                     link=registry().notifier.link(url_for("auth.confirm_request", token=token)))
            return render_template("auth/onboarding.html", form=None, sent=True, email=row.email)
    status = 400 if (error or form.errors) else 200
    return render_template("auth/onboarding.html", form=form, error=error, sent=False), status


@auth_bp.get("/onboarding/verify/<token>")
def confirm_request(token: str):
    row = registry().onboarding.verify(token)
    response = current_app.make_response(
        (render_template("auth/onboarding_verified.html", row=row), 200 if row is not None else 404))
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --- the reviewing authority's console --------------------------------------------------------
class DecisionForm(FlaskForm):
    reason = TextAreaField(_l("理由"), validators=[DataRequired(_l("请填写理由。")), Length(max=500)])


class BulkForm(FlaskForm):
    file = FileField(_l("证书清单（CSV：证书编号,电子邮件地址）"))


def _scope() -> dict:
    who = officer()
    return {"authority_id": who.authority_id, "national": who.national}


@regulator_bp.route("/onboarding", methods=["GET"])
def onboarding_queue():
    return _queue_page(DecisionForm(), BulkForm())


def _queue_page(form, bulk_form, *, status: int = 200, error: str | None = None, bulk=None):
    pending = registry().onboarding.pending(**_scope())
    return render_template("regulator/onboarding.html", pending=pending, form=form, bulk_form=bulk_form,
                           error=error, bulk=bulk), status


@regulator_bp.post("/onboarding/<int:request_id>/<decision>")
def onboarding_decide(request_id: int, decision: str):
    if decision not in ("approve", "refuse"):
        abort(404)
    form = DecisionForm()
    if not form.validate_on_submit():
        return _queue_page(form, BulkForm(), status=400)
    try:
        row, created = registry().onboarding.decide(request_id, approve=decision == "approve", reason=form.reason.data,
                                                    officer=g.account.username, **_scope())
    except AccountError as exc:
        if exc.code in ("unknown_request", "not_yours"):
            abort(404 if exc.code == "unknown_request" else 403)
        return _queue_page(form, BulkForm(), status=400, error=_message(exc))
    registry().notifier.send("onboard_decided", row.email, secret=created is not None, username=row.username,
                             institution=row.institution.name, approved=created is not None, reason=row.reason,
                             hours=int(RESET_LIFETIME.total_seconds() // 3600),
                             link=reset_link(created.token) if created is not None else "")
    flash(_("已批准 %(name)s 的账号申请。", name=row.username) if created is not None
          else _("已拒绝 %(name)s 的账号申请。", name=row.username), "success")
    return redirect(url_for("regulator.onboarding_queue"), 303)


@regulator_bp.post("/onboarding/bulk")
def onboarding_bulk():
    """Accounts for every certificate of a list (CSV: certificate number, e-mail address), each
    owner sent a link to set the password."""
    form = BulkForm()
    if not form.validate_on_submit() or not form.file.data:
        return _queue_page(DecisionForm(formdata=None), form, status=400, error=_("请选择证书清单文件。"))
    raw = form.file.data.read(2 * 1024 * 1024 + 1)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or len(raw) > 2 * 1024 * 1024:
        return _queue_page(DecisionForm(formdata=None), form, status=400,
                           error=_("证书清单应为不超过 2 MB 的 UTF-8 CSV 文件。"))
    rows = []
    for line, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in fields]
        if len(cells) < 2 or not cells[0] or cells[0] in ("证书编号", "certificate"):
            continue
        rows.append((line, cells[0], cells[1]))
        if len(rows) > MAX_BULK_ROWS:
            return _queue_page(DecisionForm(formdata=None), form, status=400,
                               error=_("证书清单最多 %(n)s 行。", n=MAX_BULK_ROWS))
    result = registry().onboarding.bulk(rows, officer=g.account.username, **_scope())
    for made in result.created:
        registry().notifier.send("onboard_decided", made.account.email, secret=True, username=made.account.username,
                                 institution="", approved=True, reason="", hours=int(RESET_LIFETIME.total_seconds() // 3600),
                                 link=reset_link(made.token))
    return _queue_page(DecisionForm(formdata=None), BulkForm(formdata=None), bulk=result)

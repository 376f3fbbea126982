"""My account (/account/): the e-mail address (verified by link), two-factor sign-in (TOTP with
a QR code, recovery codes), the signed-in browsers with "sign out everywhere", and which
notifications to receive. Every signed-in role; the only pages a regulator or admin without
two-factor sign-in may open while REQUIRE_2FA is on (so they can set it up)."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from registry.accounts.accounts import TWO_FACTOR_ROLES, AccountError
from registry.numbers.quarters import SHANGHAI

from workflows.notify import CHOICE_ROLES, CHOICES

from .auth import accounts, guard_blueprint, needs_2fa_setup, send_verification, sign_in
from .extensions import registry
from .i18n import current_language
from .qr import svg_inline

bp = guard_blueprint(Blueprint("account", __name__, url_prefix="/account"), "institution", "regulator", "admin",
                     enforce_2fa=False)


class EmailForm(FlaskForm):
    email = StringField(_l("电子邮件地址"), validators=[DataRequired(_l("请填写电子邮件地址。")), Length(max=254)])


class CodeForm(FlaskForm):
    code = StringField(_l("验证码"), validators=[DataRequired(_l("请填写验证码。")), Length(max=10)])


class DisableForm(FlaskForm):
    password = PasswordField(_l("当前密码"), validators=[DataRequired(_l("请填写当前密码。")), Length(max=200)])


def _message(exc: AccountError) -> str:
    return exc.message_en if current_language() == "en" else exc.message_zh


def _required() -> bool:
    return g.account.role in TWO_FACTOR_ROLES and bool(current_app.config.get("REQUIRE_2FA"))


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/", methods=["GET", "POST"])
def index():
    """The account page; a POST records a new e-mail address and sends it a verification link."""
    account = accounts().get(g.account.id)
    form = EmailForm()
    error = None
    if form.validate_on_submit():
        try:
            account, token = accounts().set_email(account.id, form.email.data)
        except AccountError as exc:
            error = _message(exc)
        else:
            send_verification(account, token)
            flash(_("验证链接已发送到 %(email)s，请打开邮件中的链接完成验证。", email=account.email), "ok")
            return redirect(url_for(".index"), 303)
    status = 400 if (error or form.errors) else 200
    listed = accounts().live_sessions(account.id, current=g.account.session_token)
    notifier = registry().notifier
    return render_template("account/index.html", account=account, form=form, error=error, sessions=listed,
                           action_form=FlaskForm(), required=_required(), needs_setup=needs_2fa_setup(g.account),
                           codes_left=accounts().recovery_codes_left(account.id) if account.has_2fa else 0,
                           choices=_choices(notifier, account)), status


@bp.post("/sessions/end")
def end_sessions():
    """Sign out everywhere: every browser of this account, this one included."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    accounts().end_all_sessions(g.account.id)
    logout_user()
    session.clear()
    flash(_("已在所有设备上退出登录。"), "ok")
    return redirect(url_for("auth.login"), 303)


@bp.route("/2fa", methods=["GET", "POST"])
def two_factor():
    """Set up two-factor sign-in: scan the QR code (or type the key), confirm with a code, and
    keep the recovery codes shown once."""
    account = accounts().get(g.account.id)
    if account.has_2fa:
        return redirect(url_for(".index"))
    form = CodeForm()
    error = None
    if form.validate_on_submit():
        try:
            codes = accounts().confirm_2fa(account.id, form.code.data)
        except AccountError as exc:
            error = _message(exc)
        else:
            sign_in(accounts().get(account.id))  # other sessions ended; this browser keeps going
            _tell(account, on=True)
            return _no_store(current_app.make_response(render_template("account/recovery.html", codes=codes)))
    secret = accounts().pending_2fa_secret(account.id) if request.method == "POST" else None
    if secret is None:
        secret = accounts().begin_2fa(account.id)
    uri = accounts().provisioning_uri(account, secret)
    status = 400 if (error or form.errors) else 200
    return _no_store(current_app.make_response((render_template(
        "account/two_factor.html", form=form, error=error, secret=secret, qr=svg_inline(uri, scale=4),
        required=_required()), status)))


@bp.post("/2fa/recovery")
def new_recovery_codes():
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        codes = accounts().new_recovery_codes(g.account.id)
    except AccountError:
        return redirect(url_for(".index"), 303)
    return _no_store(current_app.make_response(render_template("account/recovery.html", codes=codes)))


@bp.post("/2fa/disable")
def disable_two_factor():
    form = DisableForm()
    if not form.validate_on_submit():
        flash(_("请填写当前密码。"), "warn")
        return redirect(url_for(".index"), 303)
    try:
        accounts().disable_2fa(g.account.id, form.password.data, required=_required())
    except AccountError as exc:
        flash(_message(exc), "warn")
    else:
        _tell(accounts().get(g.account.id), on=False)
        flash(_("两步验证已关闭。"), "ok")
    return redirect(url_for(".index"), 303)


@bp.post("/notifications")
def notifications():
    """Which kinds of message this account receives (each box ticked: on)."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    notifier = registry().notifier
    ticked = set(request.form.getlist("kind"))
    for kind in notifier.choices(g.account.id):
        notifier.choose(g.account.id, kind, kind in ticked)
    flash(_("通知设置已保存。"), "ok")
    return redirect(url_for(".index"), 303)


def _choices(notifier, account) -> list[tuple[str, str, bool]]:
    """The kinds this account's role receives, with their label in the page's language."""
    english = current_language() == "en"
    return [(kind, CHOICES[kind][1 if english else 0], on) for kind, on in notifier.choices(account.id).items()
            if account.role in CHOICE_ROLES.get(kind, ())]


def _tell(account, *, on: bool) -> None:
    registry().notifier.send("two_factor", account.verified_email, account_id=account.id, username=account.username,
                             on=on, when=registry().clock().astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"))
